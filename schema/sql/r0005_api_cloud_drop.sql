-- Undo r0005_api_cloud.sql (migration 0005 downgrade, cloud).
DROP TRIGGER IF EXISTS api_lease_event ON scsync_lease_events;
DROP FUNCTION scsync_api_lease_event();
