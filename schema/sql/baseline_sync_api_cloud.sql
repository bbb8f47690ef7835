-- The start of every transaction the cloud API runs for a site (api/sync.py), in one
-- round trip: the acting site (transaction-local; the lane functions' guard reads it),
-- whether the site may sync at all, and (p_lane not null) the lane's lease for
-- p_holder, taken or renewed (free, lapsed or already this holder's). busy_holder is
-- set when another holder's lease is live.
CREATE FUNCTION scsync_sync_begin(p_site int, p_lane text, p_holder text,
                                  p_ttl_s double precision)
RETURNS TABLE (enabled boolean, busy_holder text, busy_until timestamptz,
               busy_left_s double precision)
LANGUAGE plpgsql AS $$
DECLARE
    got text;
BEGIN
    PERFORM set_config('scsync.acting_site', p_site::text, true);
    IF NOT EXISTS (SELECT 1 FROM scsync_sites s WHERE s.site_id = p_site AND NOT s.disabled) THEN
        RETURN QUERY SELECT false, NULL::text, NULL::timestamptz, NULL::double precision;
        RETURN;
    END IF;
    IF p_lane IS NOT NULL THEN
        INSERT INTO scsync_lane_leases AS l (site_id, lane, holder, expires_at)
        VALUES (p_site, p_lane, p_holder, clock_timestamp() + make_interval(secs => p_ttl_s))
        ON CONFLICT (site_id, lane) DO UPDATE
           SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
         WHERE l.holder = EXCLUDED.holder OR l.expires_at < clock_timestamp()
        RETURNING l.holder INTO got;
        IF got IS NULL THEN
            RETURN QUERY
            SELECT true, l.holder, l.expires_at,
                   extract(epoch FROM l.expires_at - clock_timestamp())::double precision
              FROM scsync_lane_leases l WHERE l.site_id = p_site AND l.lane = p_lane;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT true, NULL::text, NULL::timestamptz, NULL::double precision;
END
$$;

-- The wall of the site endpoints that write rows a site sends as they are (the
-- backfill, api/sync_files.py): called from a CASE only for a row that is not the
-- acting site's, it refuses the whole statement (42501: the API answers 403 with this
-- message, naming the row), so nothing of the request is written.
CREATE FUNCTION scsync_sync_refuse(p_site int, p_table text, p_id bigint, p_why text)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'site % may not send % %: %', p_site, p_table, p_id, p_why
        USING ERRCODE = '42501';
END
$$;

-- Every record the rows of a backfill stage refer to (a single-column foreign key to a
-- table with a site) must be the acting site's own too: the stage is applied without
-- triggers, so the foreign keys themselves are not even checked there.
CREATE FUNCTION scsync_sync_check_refs(p_site int, p_table text, p_stage regclass)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    fk record;
    bad record;
BEGIN
    FOR fk IN
        SELECT a.attname::text AS col, c.confrelid::regclass::text AS ref,
               ra.attname::text AS refcol
          FROM pg_constraint c
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
          JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = c.confkey[1]
         WHERE c.conrelid = p_table::regclass AND c.contype = 'f'
           AND array_length(c.conkey, 1) = 1
           AND EXISTS (SELECT 1 FROM pg_attribute x
                        WHERE x.attrelid = c.confrelid AND x.attname = 'site_id'
                          AND NOT x.attisdropped)
    LOOP
        EXECUTE format('SELECT s.id, r.%3$I::text AS ref_id, r.site_id AS site
                          FROM %1$s s JOIN %2$s r ON r.%3$I = s.%4$I
                         WHERE r.site_id IS DISTINCT FROM $1
                         ORDER BY s.id DESC LIMIT 1', p_stage, fk.ref, fk.refcol, fk.col)
           INTO bad USING p_site;
        IF bad.id IS NOT NULL THEN  -- (EXECUTE sets no FOUND)
            RAISE EXCEPTION 'site % may not send % %: its % refers to % % of site %', p_site,
                p_table, bad.id, fk.col, fk.ref, bad.ref_id, bad.site USING ERRCODE = '42501';
        END IF;
    END LOOP;
END
$$;
