-- Undo r0010_privileges_cloud.sql.
REVOKE EXECUTE ON FUNCTION
    scsync_replicator_read(text, int, int, jsonb, bigint[]),
    scsync_replicator_apply(text, jsonb, jsonb, bigint),
    scsync_replicator_apply_batch(text, int, text, jsonb, jsonb, bigint[], timestamptz, text,
                                  jsonb),
    scsync_replicator_ack(text, bigint[], jsonb),
    scsync_replicator_recover_rows(jsonb),
    scsync_replicator_park(text, text, bigint, int, bigint, text, double precision,
                           double precision),
    scsync_snowflake(),
    scsync_clock_ms(),
    scsync_is_replicating(),
    scsync_bookkeeping_columns(),
    scsync_api_sync_state(jsonb, text),
    scsync_api_patient_of(text, jsonb)
FROM scsync_site;
