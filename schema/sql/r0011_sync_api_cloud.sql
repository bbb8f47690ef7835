-- Revision 0011 (cloud): sites no longer log in to this database. On a cloud migrated
-- before it, revision 0002 made a login role per site (scsync_sites.db_role), a group
-- role scsync_site, row-level security policies for it on every site table and grants.
-- All of that goes; on a cloud created since, none of it exists and this does nothing.
DO $$
DECLARE
    t record;
    r text;
BEGIN
    FOR t IN SELECT c.relname::text AS tbl
               FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
              WHERE p.polname = 'scsync_site_wall' LOOP
        EXECUTE format('DROP POLICY scsync_site_wall ON %I', t.tbl);
        EXECUTE format('ALTER TABLE %I DISABLE ROW LEVEL SECURITY', t.tbl);
    END LOOP;
    FOR r IN SELECT s.db_role FROM scsync_sites s
              WHERE s.db_role IS NOT NULL
                AND EXISTS (SELECT 1 FROM pg_roles x WHERE x.rolname = s.db_role) LOOP
        EXECUTE format('REVOKE ALL ON DATABASE %I FROM %I', current_database(), r);
        EXECUTE format('DROP OWNED BY %I', r);
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
    UPDATE scsync_sites SET db_role = NULL WHERE db_role IS NOT NULL;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'scsync_site') THEN
        EXECUTE 'DROP OWNED BY scsync_site';
        BEGIN
            DROP ROLE scsync_site;
        EXCEPTION WHEN dependent_objects_still_exist THEN
            NULL;  -- another database of this cluster, not yet migrated, still uses it
        END;
    END IF;
    DROP FUNCTION IF EXISTS scsync_protect_table(regclass, text);
    DROP FUNCTION IF EXISTS scsync_unprotect_table(regclass);
    DROP FUNCTION IF EXISTS scsync_current_site();
END
$$;
