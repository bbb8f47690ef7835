-- Undo r0005_api.sql (migration 0005 downgrade).
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT table_name FROM scsync_synced_tables LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS api_event_capture ON %I', t);
    END LOOP;
END
$$;
DROP FUNCTION scsync_api_attach(text);
DROP FUNCTION scsync_api_record_event();
DROP FUNCTION scsync_api_patient_of(text, jsonb);
DROP FUNCTION scsync_api_sync_state(jsonb, text);
DROP FUNCTION scsync_api_publish(int, text, text, bigint, bigint, jsonb);
