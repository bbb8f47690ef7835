-- Undo r0011_sync_api_cloud.sql (the site roles it dropped are not made again).
DROP FUNCTION scsync_sync_begin(int, text, text, double precision);
DROP FUNCTION scsync_sync_refuse(int, text, bigint, text);
DROP FUNCTION scsync_sync_check_refs(int, text, regclass);
