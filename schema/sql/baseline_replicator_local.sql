-- The replicator on a site's database: the caller is the site's own replicator.

-- ---------------------------------------------------------------------------
-- The site a caller may act for: NULL (anything) here; the cloud replaces this with the
-- site the cloud API acts for (baseline_replicator_cloud.sql).
CREATE FUNCTION scsync_replicator_guard(p_site_id int) RETURNS int
LANGUAGE sql STABLE AS $$
    SELECT NULL::int
$$;
