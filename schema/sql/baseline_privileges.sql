-- Privileges (both sides; run last, over every function the baseline made).
--
-- PostgreSQL lets PUBLIC (every role of the cluster) execute a new function. No role but
-- the app's own (the owner, which runs the migrations and the services) has any business
-- calling ours: EXECUTE is taken from PUBLIC on every function of this schema that is
-- not an extension's, and, by default privileges of the owner, on every function a
-- later revision creates. What another role needs is granted to it by name (no role
-- needs any today: sites reach the cloud through its API).
--
-- Trigger functions fire whatever their EXECUTE rights (only CREATE TRIGGER checks
-- them); a function called inside an invoker function or a trigger, or in a trigger's
-- WHEN clause or a column default, is checked against the role that writes.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure
               FROM pg_proc p
              WHERE p.pronamespace = current_schema()::regnamespace
                AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                 WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                   AND d.deptype = 'e')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;

-- Functions created later by this role (the migrations' role). Default privileges for
-- functions cannot be revoked per schema, only database-wide for the role.
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
