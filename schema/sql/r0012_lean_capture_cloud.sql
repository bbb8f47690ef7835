-- Cloud only, revision 0012: lockd's lease events wake the API's event listeners
-- themselves (once per transaction: equal payloads fold), since the lease-event trigger's
-- scsync_api_publish no longer notifies (r0012_lean_capture.sql).
CREATE OR REPLACE FUNCTION scsync_lockd_emit(p_event text, l scsync_leases,
                                             p_detail jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    s bigint;
    at_ts timestamptz := clock_timestamp();
BEGIN
    INSERT INTO scsync_lease_events (at, event, table_name, row_id, site_id, holder, token,
                                     lease_id, detail)
    VALUES (at_ts, p_event, l.table_name, l.row_id, l.site_id, l.holder, l.token,
            l.lease_id, p_detail)
    RETURNING seq INTO s;
    PERFORM pg_notify('scsync_lease', jsonb_build_object(
        'seq', s, 'event', p_event, 'table', l.table_name, 'row_id', l.row_id,
        'site_id', l.site_id)::text);
    PERFORM pg_notify('scsync_api_events', '');
    RETURN s;
END
$$;
