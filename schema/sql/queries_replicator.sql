-- Named queries of the replicator and of schema.conflicts, run through the one runtime
-- layer (schema/database.py) or the lanes' own connections: psycopg placeholders
-- (%(name)s).

-- name: replicator_conflicts_list
SELECT id, table_name, row_id, site_id, base_revision, local_revision, cloud_revision,
       detected_on, detected_at, status, resolution, resolved_by, resolved_at
  FROM scsync_conflicts
 WHERE (CAST(%(site_id)s AS int) IS NULL OR site_id = %(site_id)s)
   AND (CAST(%(status)s AS text) IS NULL OR status = %(status)s)
 ORDER BY detected_at, id

-- name: replicator_conflicts_get
SELECT id, table_name, row_id, site_id, base_revision, local_revision, cloud_revision,
       local_row, cloud_row, detected_on, detected_at, status, resolution, resolved_by,
       resolved_at
  FROM scsync_conflicts
 WHERE id = %(id)s

-- name: replicator_conflicts_resolve
SELECT scsync_resolve_conflict(%(id)s, %(keep)s, %(by)s) AS revision

-- name: replicator_site_register
SELECT site_id, node_id FROM scsync_register_site(%(name)s, %(node_id)s)

-- name: replicator_columns
SELECT st.table_name, a.attname::text AS column_name
  FROM scsync_synced_tables st
  JOIN pg_attribute a ON a.attrelid = st.table_name::regclass
 WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
 ORDER BY st.table_name, a.attnum

-- name: replicator_schema_revision
SELECT version_num FROM alembic_version

-- name: replicator_lock
SELECT pg_try_advisory_lock(%(key)s, %(site_id)s)

-- name: replicator_read
SELECT ord, seqs, table_name, row_id, op, revision, base, row_data,
       source_commit_at, resolution::text
  FROM scsync_replicator_read(%(lane)s, %(site_id)s, %(limit)s, %(exclude)s::jsonb,
                              %(skip)s::bigint[])
 ORDER BY ord

-- name: replicator_replicating
SELECT set_config('scsync.replicating', 'on', true)

-- name: replicator_apply
SELECT ord, table_name, row_id, outcome, revision, conflict::text
  FROM scsync_replicator_apply(%(side)s, %(columns)s::jsonb, %(batch)s::jsonb, %(only_ord)s)

-- The apply wakes the destination's listeners once (its records' events).
-- name: replicator_apply_batch
SELECT b.ord, b.table_name, b.row_id, b.outcome, b.revision, b.conflict, b.batch_id
  FROM scsync_replicator_apply_batch(%(lane)s, %(site_id)s, %(side)s, %(columns)s::jsonb,
                                     %(seqs)s::jsonb, %(forget)s::bigint[],
                                     %(source_commit_at)s, %(peer_schema_revision)s,
                                     %(batch)s::jsonb) b
 CROSS JOIN (SELECT scsync_wake()) w

-- The newest seq of a site's outbox (the replicator's probe for unannounced writes).
-- name: replicator_outbox_head
SELECT coalesce(max(seq), 0) FROM scsync_outbox

-- name: replicator_wake
SELECT scsync_wake()

-- name: replicator_constraints_immediate
SET CONSTRAINTS ALL IMMEDIATE

-- name: replicator_inbox_add
INSERT INTO scsync_inbox (lane, site_id, batch_id, source_seqs, row_count)
VALUES (%(lane)s, %(site_id)s, scsync_snowflake(), %(seqs)s::jsonb, %(rows)s)
RETURNING batch_id

-- name: replicator_inbox_pending
SELECT batch_id, source_seqs::text FROM scsync_inbox
 WHERE lane = %(lane)s AND site_id = %(site_id)s
 ORDER BY batch_id

-- name: replicator_inbox_forget
DELETE FROM scsync_inbox
 WHERE lane = %(lane)s AND site_id = %(site_id)s AND batch_id = ANY(%(batch_ids)s)

-- name: replicator_cursor_advance
INSERT INTO scsync_replication_cursor AS c (lane, site_id, last_batch_id, last_applied_at,
                                            last_source_commit_at, rows_applied,
                                            peer_schema_revision)
VALUES (%(lane)s, %(site_id)s, %(batch_id)s, clock_timestamp(), %(source_commit_at)s,
        %(rows)s, %(peer_schema_revision)s)
ON CONFLICT (lane, site_id) DO UPDATE
   SET last_batch_id = EXCLUDED.last_batch_id,
       last_applied_at = EXCLUDED.last_applied_at,
       last_source_commit_at = greatest(c.last_source_commit_at,
                                        EXCLUDED.last_source_commit_at),
       rows_applied = c.rows_applied + EXCLUDED.rows_applied,
       peer_schema_revision = EXCLUDED.peer_schema_revision

-- name: replicator_outbox_keys
SELECT t, id FROM scsync_replicator_outbox_keys(%(seqs)s::bigint[])

-- name: replicator_recover_rows
SELECT scsync_replicator_recover_rows(%(keys)s::jsonb)::text

-- The ack wakes the source's listeners once (the sync badges of its records).
-- name: replicator_ack
SELECT scsync_replicator_ack(%(lane)s, %(seqs)s, %(rows)s::jsonb), scsync_wake()

-- name: replicator_park
SELECT scsync_replicator_park(%(lane)s, %(table_name)s, %(row_id)s, %(site_id)s,
                              %(revision)s, %(reason)s, %(initial_s)s, %(max_s)s)

-- name: replicator_outbox_depth
SELECT count(*), extract(epoch FROM clock_timestamp() - min(created_at))
  FROM scsync_outbox WHERE site_id = %(site_id)s

-- name: replicator_conflicts_open
SELECT count(*) FROM scsync_conflicts WHERE status = 'open' AND site_id = %(site_id)s

-- name: replicator_dead_letters
SELECT lane, table_name, row_id, revision, reason, attempts, first_failed_at, next_retry_at
  FROM scsync_dead_letters WHERE site_id = %(site_id)s ORDER BY first_failed_at

-- name: replicator_cursors
SELECT lane, site_id, last_batch_id, last_applied_at, last_source_commit_at, rows_applied,
       peer_schema_revision
  FROM scsync_replication_cursor WHERE site_id = %(site_id)s ORDER BY lane

-- The newest outbox seq of the sites whose long polls wait (api/sync.py).
-- name: sync_outbox_heads
SELECT site_id, max(seq) FROM scsync_outbox
 WHERE site_id = ANY(%(sites)s::int[]) GROUP BY site_id

-- name: sync_begin
-- First statement of every transaction the cloud API runs for a site (api/sync.py):
-- the acting site, the site enabled, the lane's lease (schema/sql/baseline_sync_api_cloud.sql).
SELECT enabled, busy_holder, busy_until, busy_left_s
  FROM scsync_sync_begin(%(site_id)s, %(lane)s, %(holder)s, %(ttl_s)s)

-- name: sync_lease_release
DELETE FROM scsync_lane_leases
 WHERE site_id = %(site_id)s AND lane = %(lane)s AND holder = %(holder)s

-- name: sync_isolation_repeatable_read
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ

-- The WAL capture of a site (replicator/wal.py, schema/sql/baseline_capture_local.sql).
-- name: capture_settings
SELECT current_setting('wal_level'), current_setting('max_replication_slots')

-- Origins are the cluster's, and one is active in one session at a time: the name
-- carries the database's oid, so two site databases of one cluster (a test, a demo,
-- two clinics on one server) each have their own.
-- name: capture_origin_setup
SELECT pg_replication_origin_session_setup(o.name)
  FROM (SELECT %(origin)s::text || '_' || d.oid AS name
          FROM pg_database d WHERE d.datname = current_database()) o,
       LATERAL (SELECT CASE WHEN pg_replication_origin_oid(o.name) IS NULL
                            THEN pg_replication_origin_create(o.name) END) made

-- name: capture_slot
SELECT wal_status, confirmed_flush_lsn::text FROM pg_replication_slots
 WHERE slot_name = %(slot)s AND database = current_database()

-- name: capture_state
SELECT slot_name FROM scsync_capture_state

-- name: capture_slot_drop
SELECT pg_drop_replication_slot(%(slot)s)

-- name: capture_slot_create
SELECT lsn::text FROM pg_create_logical_replication_slot(%(slot)s, 'pgoutput')

-- name: capture_resync
SELECT scsync_capture_resync(%(slot)s, %(lsn)s)

-- The site's capture as status and metrics show it: the mode, and with "wal" its slot
-- (none: NULLs), the WAL it keeps, wal_status (reserved, extended, unreserved, lost),
-- the confirmed position (moved only after the cloud committed what came before it and
-- the site acknowledged it) and the WAL past it (the whole cluster's: other databases'
-- writes count too, so it says how far behind the cloud is, not how many changes).
-- name: capture_status
SELECT n.capture, s.slot_name, s.active, s.wal_status,
       pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.restart_lsn)::bigint,
       s.confirmed_flush_lsn::text,
       pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.confirmed_flush_lsn)::bigint
  FROM scsync_node n
  LEFT JOIN pg_replication_slots s
    ON s.database = current_database() AND s.slot_name LIKE 'scsync\_%%' 

-- Where the site's WAL ends now, and whether all of it is flushed (decodable).
-- name: capture_wal_position
SELECT pg_current_wal_insert_lsn()::text,
       pg_current_wal_flush_lsn() >= pg_current_wal_insert_lsn()

-- name: capture_flush
SELECT set_config('synchronous_commit', 'on', true), pg_current_xact_id()

-- Decoded changes as one push batch (schema/sql/r0003_wal_direct_local.sql).
-- name: capture_read
SELECT ord, seqs, table_name, row_id, op, revision, base, row_data,
       source_commit_at, resolution::text
  FROM scsync_capture_read(%(lane)s, %(site_id)s, %(changes)s::jsonb, %(exclude)s::jsonb,
                           %(busy)s::jsonb, %(xids)s::bigint[])
 ORDER BY ord

-- Records of a WAL batch parked by the ack: to the outbox, for their retry.
-- name: capture_requeue
SELECT scsync_capture_requeue(%(site_id)s, %(keys)s::jsonb)

-- Whether the outbox holds anything for the push lane of a WAL site (a resync's rows,
-- parked records, rows an earlier version left): read before the stream.
-- name: capture_outbox_waiting
SELECT EXISTS (SELECT 1 FROM scsync_outbox WHERE site_id = %(site_id)s)

-- A WAL batch's end LSN claimed at the destination, in the apply's transaction
-- (r0003_wal_direct.sql): false for a replay, which then applies nothing.
-- name: replicator_claim_lsn
SELECT scsync_replicator_claim_lsn(%(lane)s, %(site_id)s, %(lsn)s::pg_lsn)

-- The source position the destination holds for a lane of a site (api/sync.py's
-- push/position).
-- name: replicator_source_lsn
SELECT source_lsn::text FROM scsync_replication_cursor
 WHERE lane = %(lane)s AND site_id = %(site_id)s

-- name: capture_mode
SELECT capture FROM scsync_node

-- name: capture_mode_set
UPDATE scsync_node SET capture = %(mode)s

-- When the WAL capture begins: a resync after a lost slot takes the unsynced rows
-- changed since then.
-- name: capture_begin
UPDATE scsync_capture_state SET capture_since = clock_timestamp() WHERE slot_name IS NULL

-- name: capture_forget
UPDATE scsync_capture_state SET slot_name = NULL, updated_at = clock_timestamp()
