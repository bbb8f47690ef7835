DROP FUNCTION IF EXISTS scsync_blob_in_scope(text, bigint, text, date);
DROP VIEW IF EXISTS scsync_file_rows;
