-- Revision 0012 undone, second half (after the earlier function bodies are back): the
-- row triggers of 0006 (stamp, capture) and 0005 (API events) on every synced table.
SELECT scsync_capture_attach(table_name::regclass)
  FROM scsync_synced_tables ORDER BY registered_at, table_name;
SELECT scsync_api_attach(table_name) FROM scsync_synced_tables ORDER BY table_name;
