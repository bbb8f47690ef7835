-- Named queries of lockd (lockd/manager.py, lockd/offline.py, lockd/events.py).
-- Parameters are psycopg's %(name)s: lockd talks to PostgreSQL through psycopg 3 async.
-- The lease operations are functions (schema/sql/baseline_lockd_cloud.sql), so each is one
-- statement, one transaction and one round trip. Integer parameters are cast because
-- psycopg sends a Python int as the smallest integer type that holds it.

-- name: lockd_acquire
SELECT scsync_lockd_acquire(%(table)s, %(row_id)s::bigint, %(scope_site)s::integer,
                            %(holder)s, %(ttl_ms)s::integer)

-- name: lockd_renew
SELECT scsync_lockd_renew(%(lease_id)s::uuid, %(token)s::bigint, %(owner)s,
                          %(owner_prefix)s::boolean, %(ttl_ms)s::integer,
                          %(activity)s::boolean)

-- name: lockd_release
SELECT scsync_lockd_release(%(lease_id)s::uuid, %(token)s::bigint, %(owner)s,
                            %(owner_prefix)s::boolean)

-- name: lockd_break
SELECT scsync_lockd_break(%(table)s, %(row_id)s::bigint, %(scope_site)s::integer,
                          %(by)s, %(reason)s)

-- name: lockd_get
SELECT scsync_lockd_get(%(table)s, %(row_id)s::bigint, %(scope_site)s::integer)

-- name: lockd_sweep
SELECT scsync_lockd_sweep(%(idle_warn_ms)s::bigint, %(idle_close_ms)s::bigint,
                          %(retention_ms)s::bigint)

-- name: lockd_save
SELECT scsync_lockd_save(%(lease_id)s::uuid, %(token)s::bigint, %(owner)s,
                         %(owner_prefix)s::boolean, %(expected_revision)s::bigint,
                         %(changes)s::jsonb, %(save_id)s::uuid,
                         %(protected)s::text[])

-- name: lockd_begin_save
SELECT scsync_lockd_begin_save(%(lease_id)s::uuid, %(token)s::bigint, %(owner)s,
                               %(owner_prefix)s::boolean, %(base_revision)s::bigint)

-- name: lockd_end_save
SELECT scsync_lockd_end_save(%(lease_id)s::uuid, %(token)s::bigint, %(owner)s,
                             %(owner_prefix)s::boolean, %(new_revision)s::bigint,
                             %(changed)s::boolean)

-- name: lockd_history_row
SELECT row_data FROM scsync_history
 WHERE table_name = %(table)s AND row_id = %(row_id)s::bigint AND revision = %(revision)s::bigint

-- name: lockd_lease_of
SELECT table_name, row_id FROM scsync_leases WHERE lease_id = %(lease_id)s::uuid

-- name: lockd_events_since
SELECT seq, at, event, table_name, row_id, site_id, holder, token, lease_id, detail
  FROM scsync_lease_events
 WHERE seq > %(after_seq)s::bigint
   AND (%(site_id)s::integer IS NULL OR site_id = %(site_id)s::integer)
 ORDER BY seq
 LIMIT %(limit)s::integer

-- name: lockd_listen
LISTEN scsync_lease

-- name: lockd_unlisten
UNLISTEN scsync_lease

-- name: lockd_apply
SELECT changed, new_major, new_minor, new_revision
  FROM scsync_lockd_apply(%(table)s::regclass, %(row_id)s::bigint, %(changes)s::jsonb, %(bump)s,
                        %(protected)s::text[])

-- The table of lockd_local_record is filled in with psycopg.sql.Identifier.
-- name: lockd_local_record
SELECT site_id, version_major, version_minor, revision, deleted
  FROM {table} WHERE id = %(row_id)s::bigint FOR UPDATE

-- name: lockd_offline_open
INSERT INTO scsync_offline_sessions (session_id, table_name, row_id, site_id, holder, reason,
                                     base_revision, base_version_major, base_version_minor)
VALUES (gen_random_uuid(), %(table)s, %(row_id)s::bigint, %(site_id)s::integer, %(holder)s,
        %(reason)s, %(revision)s::bigint, %(version_major)s::integer, %(version_minor)s::integer)
RETURNING session_id, table_name, row_id, site_id, holder, unfenced, reason, base_revision,
          base_version_major, base_version_minor, saves, last_saved_revision, status, opened_at

-- name: lockd_offline_get
SELECT session_id, table_name, row_id, site_id, holder, unfenced, reason, base_revision,
       base_version_major, base_version_minor, saves, last_saved_revision, status, opened_at
  FROM scsync_offline_sessions WHERE session_id = %(session_id)s::uuid FOR UPDATE

-- name: lockd_offline_saved
UPDATE scsync_offline_sessions
   SET saves = saves + 1, last_saved_revision = %(revision)s::bigint
 WHERE session_id = %(session_id)s::uuid

-- name: lockd_offline_close
UPDATE scsync_offline_sessions SET status = 'closed', closed_at = clock_timestamp()
 WHERE session_id = %(session_id)s::uuid AND status = 'open'

-- name: lockd_offline_open_sessions
SELECT session_id, table_name, row_id, site_id, holder, unfenced, reason, base_revision,
       base_version_major, base_version_minor, saves, last_saved_revision, status, opened_at
  FROM scsync_offline_sessions WHERE status = 'open' ORDER BY opened_at
