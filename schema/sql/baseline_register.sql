-- The synced tables (after the tables are made): revisions follow the node id, and each
-- synced table is registered with its file column.

CREATE TRIGGER scsync_node_sequences AFTER INSERT OR UPDATE OF node_id ON scsync_node
    FOR EACH ROW EXECUTE FUNCTION scsync_node_sequences();

-- Parents first.
SELECT scsync_register_table('doctors');

SELECT scsync_register_table('patients');

SELECT scsync_register_table('user_accounts');

SELECT scsync_register_table('report_templates');

SELECT scsync_register_table('settings');

SELECT scsync_register_table('images', 'blob_sha256');

SELECT scsync_register_table('captures', 'blob_sha256');

SELECT scsync_register_table('project_files', 'blob_sha256');

SELECT scsync_register_table('reports');
