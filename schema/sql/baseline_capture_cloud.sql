-- Change capture, the cloud's own part: registration without a publication (the cloud
-- captures with its triggers only).

CREATE FUNCTION scsync_register_table(tbl regclass, file_column text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO scsync_synced_tables (table_name, file_column)
    SELECT c.relname, file_column FROM pg_class c WHERE c.oid = tbl;
    PERFORM scsync_capture_attach(tbl);
END
$$;
