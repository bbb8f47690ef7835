-- Revision 0013 undone (local): the spool, the resync and the publication go; the
-- migration then puts back 0012's scsync_register_table (which does not publish).
DROP FUNCTION scsync_capture_spool(text, jsonb);
DROP FUNCTION scsync_capture_resync(text, text);
DROP FUNCTION scsync_capture_publish(regclass);
DROP PUBLICATION scsync_capture;
