-- Named queries every package needs (schema/db.py), run through the one runtime layer
-- (schema/database.py). Each block starts with "-- name: <query_name>"; parameters are
-- psycopg placeholders (%(name)s), as in every queries*.sql.

-- name: node_get
SELECT node_id, side, site_id FROM scsync_node

-- name: node_set
INSERT INTO scsync_node (singleton, node_id, side, site_id)
VALUES (true, %(node_id)s, %(side)s, %(site_id)s)
ON CONFLICT (singleton) DO UPDATE
   SET node_id = EXCLUDED.node_id, side = EXCLUDED.side, site_id = EXCLUDED.site_id,
       configured_at = now()

-- name: snowflake_next
SELECT scsync_snowflake()

-- name: synced_tables
SELECT table_name, file_column FROM scsync_synced_tables ORDER BY registered_at, table_name
