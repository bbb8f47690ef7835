-- lockd, revision 0003: undo r0003_lockd_leases.sql.
DROP FUNCTION IF EXISTS scsync_lockd_end_save(uuid, bigint, text, boolean, bigint, boolean);
DROP FUNCTION IF EXISTS scsync_lockd_begin_save(uuid, bigint, text, boolean, bigint);
DROP FUNCTION IF EXISTS scsync_lockd_save(uuid, bigint, text, boolean, bigint, jsonb, uuid, text[]);
DROP FUNCTION IF EXISTS scsync_lockd_sweep(bigint, bigint, bigint);
DROP FUNCTION IF EXISTS scsync_lockd_get(text, bigint, integer);
DROP FUNCTION IF EXISTS scsync_lockd_break(text, bigint, integer, text, text);
DROP FUNCTION IF EXISTS scsync_lockd_release(uuid, bigint, text, boolean);
DROP FUNCTION IF EXISTS scsync_lockd_renew(uuid, bigint, text, boolean, integer, boolean);
DROP FUNCTION IF EXISTS scsync_lockd_hold(uuid, bigint, text, boolean);
DROP FUNCTION IF EXISTS scsync_lockd_acquire(text, bigint, integer, text, integer);
DROP FUNCTION IF EXISTS scsync_lockd_record(text, bigint, integer);
DROP FUNCTION IF EXISTS scsync_lockd_emit(text, scsync_leases, jsonb);
DROP FUNCTION IF EXISTS scsync_lockd_lease_json(scsync_leases, timestamptz);
DROP FUNCTION IF EXISTS scsync_lockd_key(text, bigint);
