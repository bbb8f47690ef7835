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

-- name: ops_dead_letters_count
SELECT count(*) FROM scsync_dead_letters WHERE site_id = %(site_id)s

-- name: ops_file_bytes_synced
-- Bytes of this site's files whose rows have crossed (both sides hold that revision).
SELECT coalesce(sum(blob_size), 0) FROM (
    SELECT blob_size FROM images WHERE site_id = %(site_id)s AND synced AND blob_size IS NOT NULL
    UNION ALL
    SELECT blob_size FROM captures WHERE site_id = %(site_id)s AND synced AND blob_size IS NOT NULL
    UNION ALL
    SELECT blob_size FROM project_files
     WHERE site_id = %(site_id)s AND synced AND blob_size IS NOT NULL
) AS f

-- name: ops_metrics_outbox
-- Outbox rows waiting per site and the age of the oldest (the API's /metrics).
SELECT site_id, count(*) AS depth,
       coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) AS oldest_s
  FROM scsync_outbox GROUP BY site_id

-- name: ops_metrics_cursors
SELECT lane, site_id, rows_applied,
       coalesce(extract(epoch FROM last_applied_at - last_source_commit_at), 0) AS lag_s
  FROM scsync_replication_cursor

-- name: ops_metrics_leases
SELECT site_id, count(*) FROM scsync_leases WHERE expires_at > clock_timestamp() GROUP BY site_id

-- name: ops_metrics_backfill
SELECT state, rows_total, rows_done, bytes_total, bytes_done FROM scsync_backfill
