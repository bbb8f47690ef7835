-- Registers the synced tables of revision 0001, parents first.
SELECT scsync_register_table('doctors');
SELECT scsync_register_table('patients');
SELECT scsync_register_table('user_accounts');
SELECT scsync_register_table('report_templates');
SELECT scsync_register_table('settings');
SELECT scsync_register_table('images', 'blob_sha256');
SELECT scsync_register_table('captures', 'blob_sha256');
SELECT scsync_register_table('project_files', 'blob_sha256');
SELECT scsync_register_table('reports');
