-- Cloud only, revision 0010: what a site's database role (group scsync_site, used by
-- the replicator's lanes and the files backfill) calls, now that PUBLIC calls nothing.
-- Revision 0011 drops the site roles, and these grants with them.
--
-- The lane functions (SECURITY DEFINER here, r0002_replicator_cloud.sql) check the
-- caller's site themselves and use no table made before the call; the helpers are what
-- a site role's writes reach through invoker triggers, WHEN clauses and defaults.
-- scsync_current_site (row-level security) is granted since r0002.
GRANT EXECUTE ON FUNCTION
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
TO scsync_site;
