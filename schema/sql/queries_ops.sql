-- Named queries of `scsync status` (ops): read-only figures for the one-screen view.

-- name: ops_leases_live
-- Live leases (not past their TTL by the database clock), by the holder's side;
-- all sites when site_id is null.
SELECT count(*) AS live,
       count(*) FILTER (WHERE starts_with(holder, 'local:')) AS by_local,
       count(*) FILTER (WHERE starts_with(holder, 'cloud:')) AS by_cloud
  FROM scsync_leases
 WHERE expires_at > clock_timestamp()
   AND (%(site_id)s::int IS NULL OR site_id = %(site_id)s::int)

-- name: ops_sites
SELECT site_id, name, node_id, disabled FROM scsync_sites ORDER BY site_id

-- name: ops_outbox_by_site
SELECT site_id, count(*) AS depth,
       extract(epoch FROM clock_timestamp() - min(created_at)) AS oldest_s
  FROM scsync_outbox GROUP BY site_id

-- name: ops_conflicts_by_site
SELECT site_id, count(*) AS open FROM scsync_conflicts WHERE status = 'open' GROUP BY site_id

-- name: ops_parked_by_site
SELECT site_id, count(*) AS parked FROM scsync_dead_letters GROUP BY site_id

-- name: ops_cursors_all
SELECT lane, site_id, last_applied_at, last_source_commit_at, rows_applied,
       extract(epoch FROM clock_timestamp() - last_applied_at) AS since_s
  FROM scsync_replication_cursor ORDER BY site_id, lane
