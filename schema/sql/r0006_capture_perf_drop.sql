-- Undo r0006_capture_perf.sql (migration 0006 downgrade): the row triggers and the
-- functions of revision 0001 as they were.
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT table_name FROM scsync_synced_tables ORDER BY table_name LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS scsync_stamp ON %I', t);
        EXECUTE format('DROP TRIGGER IF EXISTS scsync_capture ON %I', t);
        EXECUTE format('DROP TRIGGER IF EXISTS scsync_capture_upd ON %I', t);
        EXECUTE format('CREATE TRIGGER scsync_capture AFTER INSERT OR UPDATE OR DELETE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION scsync_capture()', t);
        EXECUTE format('CREATE TRIGGER scsync_stamp BEFORE INSERT OR UPDATE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION scsync_stamp_revision()', t);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION scsync_register_table(tbl regclass, file_column text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    tname text;
BEGIN
    SELECT c.relname INTO tname FROM pg_class c WHERE c.oid = tbl;
    EXECUTE format('CREATE TRIGGER scsync_stamp BEFORE INSERT OR UPDATE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION scsync_stamp_revision()', tbl);
    EXECUTE format('CREATE TRIGGER scsync_capture AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION scsync_capture()', tbl);
    INSERT INTO scsync_synced_tables (table_name, file_column)
    VALUES (tname, file_column);
END
$$;

CREATE OR REPLACE FUNCTION scsync_unregister_table(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS scsync_stamp ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS scsync_capture ON %s', tbl);
    DELETE FROM scsync_synced_tables
     WHERE table_name = (SELECT relname FROM pg_class WHERE oid = tbl);
END
$$;

DROP FUNCTION scsync_capture_attach(regclass);
