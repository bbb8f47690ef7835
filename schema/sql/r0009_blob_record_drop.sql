DROP FUNCTION IF EXISTS scsync_blob_record_uploaded(integer, text, bigint);
