-- Revision 0012 undone, first half: the new triggers, defaults, functions and sequences
-- go; the migration then puts back the earlier definitions of the functions 0012
-- replaced (named in the migration, read from their own files) and re-attaches the row
-- triggers of 0006 and 0005 (r0012_lean_capture_reattach.sql).
DO $$
DECLARE
    t text;
    old_trigger text;
BEGIN
    FOR t IN SELECT table_name FROM scsync_synced_tables LOOP
        FOREACH old_trigger IN ARRAY ARRAY['scsync_stamp', 'scsync_capture_ins',
                                           'scsync_capture_upd', 'scsync_capture_del'] LOOP
            EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', old_trigger, t);
        END LOOP;
        EXECUTE format('ALTER TABLE %I ALTER COLUMN revision DROP DEFAULT', t);
        EXECUTE format('ALTER TABLE %I ALTER COLUMN site_id DROP DEFAULT', t);
    END LOOP;
END
$$;

SELECT setval('scsync_snowflake_state', greatest(s.last_value, l.last_value))
  FROM scsync_snowflake_state s, scsync_snowflake_l l;

DROP TRIGGER scsync_node_sequences ON scsync_node;
DROP FUNCTION scsync_node_sequences();
DROP FUNCTION scsync_node_site();
DROP FUNCTION scsync_stamp_update();
DROP FUNCTION scsync_capture_rows();
DROP FUNCTION scsync_wake();
DROP FUNCTION scsync_api_events_after(bigint, integer, integer);
DROP FUNCTION scsync_api_events_newest();
DROP SEQUENCE scsync_revision_seq;
DROP SEQUENCE scsync_snowflake_l;
