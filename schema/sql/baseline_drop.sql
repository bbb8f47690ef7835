-- The baseline undone (both sides): before its tables go (schema/migrations/steps.py),
-- what depends on them or they on it. Functions are dropped by name prefix, with what
-- uses them (column defaults, triggers).
DROP PUBLICATION IF EXISTS scsync_capture;
DROP VIEW IF EXISTS scsync_file_rows;

DO $$
BEGIN
    EXECUTE (SELECT 'DROP FUNCTION ' || string_agg(p.oid::regprocedure::text, ', ') || ' CASCADE'
               FROM pg_proc p
              WHERE p.pronamespace = current_schema()::regnamespace
                AND p.proname LIKE 'scsync\_%'
                AND NOT EXISTS (SELECT 1 FROM pg_extension e JOIN pg_depend d ON d.refobjid = e.oid
                                 WHERE d.objid = p.oid AND d.deptype = 'e'));
END
$$;

DROP TYPE scsync_stage_row;
DROP TYPE scsync_read_key;
DROP SEQUENCE scsync_revision_seq CASCADE;
DROP SEQUENCE scsync_snowflake_l;
ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
