-- The baseline undone (both sides): before its tables go (schema/migrations/steps.py),
-- what depends on them or they on it. Functions are dropped by name prefix, with what
-- uses them (column defaults, triggers).
DROP PUBLICATION IF EXISTS scsync_capture;
DROP VIEW IF EXISTS scsync_file_rows;

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure
               FROM pg_proc p
              WHERE p.pronamespace = current_schema()::regnamespace
                AND p.proname LIKE 'scsync\_%'
                AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                 WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                   AND d.deptype = 'e')
    LOOP
        EXECUTE format('DROP FUNCTION %s CASCADE', f);
    END LOOP;
END
$$;

DROP TYPE scsync_stage_row;
DROP TYPE scsync_read_key;
DROP SEQUENCE scsync_revision_seq CASCADE;
DROP SEQUENCE scsync_snowflake_l;
ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
