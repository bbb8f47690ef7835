DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT table_name FROM scsync_synced_tables LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS files_lifecycle ON %I', t.table_name);
        EXECUTE format('DROP TRIGGER IF EXISTS files_blob_state ON %I', t.table_name);
    END LOOP;
END
$$;
DROP FUNCTION IF EXISTS scsync_files_lifecycle();
DROP FUNCTION IF EXISTS scsync_files_blob_state();
