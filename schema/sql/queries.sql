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

-- A save's own history row, in the save's transaction (r0003_wal_direct.sql): every
-- write of scsync's own (the APIs, an edit session's save, the sync switch of the CLI)
-- writes it at once. On a WAL site nothing else would until the push lane decodes the
-- change, after a save made meanwhile: the history's order would not be the saves'
-- order, and the sync switch reads "where sync went off" from that order.
-- name: history_save
SELECT scsync_history_save(%(table)s::regclass, %(row_id)s::bigint, %(op)s)
