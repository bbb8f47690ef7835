-- Tenant walls on the cloud, revision 0002 (cloud only).
--
-- A site's replicator logs in to the cloud database as its own role (made by
-- `scsync site register`), a member of the group role scsync_site. Row-level security
-- limits every member of that group to the rows of the one site whose
-- scsync_sites.db_role is the login role (session_user: a site role cannot change it,
-- SET ROLE only reaches roles it is a member of, and it is a member of none but the
-- group). The owner of the tables (the cloud app role that runs migrations) and
-- superusers bypass RLS, as before.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'scsync_site') THEN
        CREATE ROLE scsync_site NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database of the same cluster created it at the same moment
END
$$;

-- The site of the current login, NULL for anyone who is not a registered site role.
-- SECURITY DEFINER: site roles cannot read scsync_sites themselves.
-- search_path: pg_temp last, or a site role could shadow scsync_sites with a temp table.
CREATE FUNCTION scsync_current_site() RETURNS int
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT s.site_id FROM scsync_sites s WHERE s.db_role = session_user AND NOT s.disabled
$$;
REVOKE ALL ON FUNCTION scsync_current_site() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION scsync_current_site() TO scsync_site;

-- Row-level security for one table with a site_id column; `privileges` are what site
-- roles may do at all (RLS then limits the rows). Also for tables added later.
CREATE FUNCTION scsync_protect_table(tbl regclass, privileges text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('CREATE POLICY scsync_site_wall ON %s TO scsync_site '
                   'USING (site_id = (SELECT scsync_current_site())) '
                   'WITH CHECK (site_id = (SELECT scsync_current_site()))', tbl);
    EXECUTE format('GRANT %s ON %s TO scsync_site', privileges, tbl);
END
$$;

CREATE FUNCTION scsync_unprotect_table(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP POLICY IF EXISTS scsync_site_wall ON %s', tbl);
    EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('REVOKE ALL ON %s FROM scsync_site', tbl);
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    -- The cloud never hard-deletes a synced row: no DELETE for sites.
    FOR t IN SELECT table_name FROM scsync_synced_tables LOOP
        PERFORM scsync_protect_table(t::regclass, 'SELECT, INSERT, UPDATE');
    END LOOP;
END
$$;
SELECT scsync_protect_table('scsync_outbox', 'SELECT, DELETE');
SELECT scsync_protect_table('scsync_inbox', 'SELECT, INSERT, DELETE');
SELECT scsync_protect_table('scsync_replication_cursor', 'SELECT, INSERT, UPDATE');
SELECT scsync_protect_table('scsync_conflicts', 'SELECT, INSERT, UPDATE');
SELECT scsync_protect_table('scsync_history', 'SELECT, INSERT');
SELECT scsync_protect_table('scsync_dead_letters', 'SELECT, INSERT, UPDATE, DELETE');

-- What the triggers and the apply read or bump on behalf of a site.
GRANT SELECT ON scsync_node, scsync_synced_tables, alembic_version TO scsync_site;
GRANT USAGE, SELECT, UPDATE ON SEQUENCE scsync_snowflake_state TO scsync_site;

-- Register a site: its row, the next free node id (unless given), its login role with
-- the given password, membership of scsync_site. Run by the cloud operator.
CREATE FUNCTION scsync_register_site(p_name text, p_password text, p_node_id int DEFAULT NULL)
RETURNS TABLE (site_id int, node_id int, db_role text)
LANGUAGE plpgsql AS $$
DECLARE
    s scsync_sites%ROWTYPE;
    node int := p_node_id;
    role_name text;
BEGIN
    IF node IS NULL THEN
        SELECT min(n) INTO node FROM generate_series(1, 4095) n
         WHERE n NOT IN (SELECT x.node_id FROM scsync_sites x);
        IF node IS NULL THEN
            RAISE EXCEPTION 'all 4095 node ids are taken' USING ERRCODE = 'SC220';
        END IF;
    END IF;
    INSERT INTO scsync_sites (name, node_id) VALUES (p_name, node) RETURNING * INTO s;
    -- Roles are cluster-wide; the database's name in the role keeps two cloud databases
    -- of one cluster (staging, tests) apart.
    role_name := format('scsync_site%s_%s', s.site_id, left(md5(current_database()), 8));
    EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE scsync_site', role_name,
                   p_password);
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(),
                   role_name);
    UPDATE scsync_sites x SET db_role = role_name WHERE x.site_id = s.site_id;
    RETURN QUERY SELECT s.site_id, s.node_id, role_name;
END
$$;

-- The lane functions run as their owner on the cloud, so that what other triggers on
-- the synced tables write (events, blob states) needs no grant to site roles; the wall
-- for them is this guard: a site role acts for its own site only, every function
-- checks or filters by it. Anyone else (the cloud's own roles) is not limited.
CREATE OR REPLACE FUNCTION scsync_replicator_guard(p_site_id int) RETURNS int
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    s int;
BEGIN
    IF (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = session_user)
       OR NOT pg_has_role(session_user, 'scsync_site', 'MEMBER') THEN
        RETURN NULL;
    END IF;
    s := scsync_current_site();
    IF s IS NULL OR (p_site_id IS NOT NULL AND p_site_id <> s) THEN
        RAISE EXCEPTION 'role % may not act for site %', session_user, p_site_id
            USING ERRCODE = '42501';
    END IF;
    RETURN s;
END
$$;
ALTER FUNCTION scsync_replicator_read(text, int, int, jsonb, bigint[])
    SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION scsync_replicator_apply(text, jsonb, jsonb, bigint)
    SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION scsync_replicator_ack(text, bigint[], jsonb)
    SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION scsync_replicator_recover_rows(jsonb)
    SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION scsync_replicator_park(text, text, bigint, int, bigint, text,
                                      double precision, double precision)
    SECURITY DEFINER SET search_path = public, pg_temp;
