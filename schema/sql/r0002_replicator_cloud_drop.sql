-- Undo r0002_replicator_cloud.sql. The group role scsync_site is cluster-wide and may
-- still be used by other databases of the cluster; it is dropped only when unused.
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT table_name FROM scsync_synced_tables LOOP
        PERFORM scsync_unprotect_table(t::regclass);
    END LOOP;
END
$$;
SELECT scsync_unprotect_table('scsync_outbox');
SELECT scsync_unprotect_table('scsync_inbox');
SELECT scsync_unprotect_table('scsync_replication_cursor');
SELECT scsync_unprotect_table('scsync_conflicts');
SELECT scsync_unprotect_table('scsync_history');
SELECT scsync_unprotect_table('scsync_dead_letters');
REVOKE ALL ON scsync_node, scsync_synced_tables, alembic_version FROM scsync_site;
REVOKE ALL ON SEQUENCE scsync_snowflake_state FROM scsync_site;
DROP FUNCTION scsync_protect_table(regclass, text);
DROP FUNCTION scsync_unprotect_table(regclass);
DROP FUNCTION scsync_register_site(text, text, int);
DROP FUNCTION scsync_current_site();
DO $$
BEGIN
    DROP ROLE scsync_site;
EXCEPTION WHEN dependent_objects_still_exist OR undefined_object THEN
    NULL;  -- still granted something in another database of this cluster
END
$$;
