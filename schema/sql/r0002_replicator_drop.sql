-- Undo r0002_replicator.sql.
DROP FUNCTION scsync_replicator_read(text, int, int, jsonb, bigint[]);
DROP FUNCTION scsync_replicator_stage(jsonb);
DROP FUNCTION scsync_replicator_apply(text, jsonb, jsonb, bigint);
DROP FUNCTION scsync_replicator_ack(text, bigint[], jsonb);
DROP FUNCTION scsync_replicator_recover_rows(jsonb);
DROP FUNCTION scsync_replicator_park(text, text, bigint, int, bigint, text,
                                     double precision, double precision);
DROP FUNCTION scsync_resolve_conflict(bigint, text, text);
DROP FUNCTION scsync_replicator_outbox_keys(bigint[]);
DROP FUNCTION scsync_replicator_check_keys(jsonb, int);
DROP FUNCTION scsync_replicator_guard(int);
DROP FUNCTION scsync_replicator_apply_batch(text, int, text, jsonb, jsonb, bigint[], timestamptz,
                                             text, jsonb);
DROP FUNCTION scsync_scratch_ok(text, regtype);
DROP TYPE scsync_stage_row;
DROP TYPE scsync_read_key;
