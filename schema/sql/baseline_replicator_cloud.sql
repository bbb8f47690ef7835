-- Tenant walls on the cloud (cloud only).
--
-- Sites never log in to the cloud database: a site's replicator talks to the cloud API
-- (api/sync.py) with its site token, and the API runs the lane functions as the cloud
-- app's own role. Each of its transactions first sets the transaction-local setting
-- scsync.acting_site to the site of the token; the guard below turns that into the
-- wall every lane function checks (its own rows, its own seqs, its own conflicts and
-- dead letters, every referenced record its own). Nobody but the API and the cloud's
-- operators holds a login on this database, so nobody else can set it; unset (the
-- cloud's own jobs, operators) means no limit.

-- Register a site: its row and the next free node id (unless given). No database role:
-- the site reaches the cloud only through the cloud API with its site token.
CREATE FUNCTION scsync_register_site(p_name text, p_node_id int DEFAULT NULL)
RETURNS TABLE (site_id int, node_id int)
LANGUAGE plpgsql AS $$
DECLARE
    s scsync_sites%ROWTYPE;
    node int := p_node_id;
BEGIN
    IF node IS NULL THEN
        SELECT min(n) INTO node FROM generate_series(1, 4095) n
         WHERE n NOT IN (SELECT x.node_id FROM scsync_sites x);
        IF node IS NULL THEN
            RAISE EXCEPTION 'all 4095 node ids are taken' USING ERRCODE = 'SC220';
        END IF;
    END IF;
    INSERT INTO scsync_sites (name, node_id) VALUES (p_name, node) RETURNING * INTO s;
    RETURN QUERY SELECT s.site_id, s.node_id;
END
$$;

-- The site the caller acts for (set by the cloud API from the token), NULL for the
-- cloud's own roles. A caller acting for a site may name no other site.
CREATE FUNCTION scsync_replicator_guard(p_site_id int) RETURNS int
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s int := nullif(current_setting('scsync.acting_site', true), '')::int;
BEGIN
    IF s IS NULL THEN
        RETURN NULL;
    END IF;
    IF p_site_id IS NOT NULL AND p_site_id <> s THEN
        RAISE EXCEPTION 'site % may not act for site %', s, p_site_id USING ERRCODE = '42501';
    END IF;
    RETURN s;
END
$$;
