-- Undo r0002_replicator_cloud.sql (the guard is dropped by r0002_replicator_drop.sql).
DROP FUNCTION scsync_register_site(text, int);
