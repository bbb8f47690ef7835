-- blob_record (cloud): what the blobs API does once it has verified an upload, in one
-- call (one round trip instead of BEGIN, two statements and COMMIT).
--
-- The blob is recorded 'uploaded' first; then, in a later statement so that the rows'
-- blob_state trigger (r0004) finds it, every row of the site referencing it turns
-- 'uploaded' (bookkeeping: no revision moves), the blob's open requests are served and
-- a record.sync event goes out per row (scsync_api_publish, r0005). Returns the number
-- of requests served.
CREATE FUNCTION scsync_blob_record_uploaded(p_site_id integer, p_sha256 text, p_size bigint)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n_served integer;
    n_rows integer;
BEGIN
    INSERT INTO scsync_blobs (site_id, sha256, size, state, uploaded_at)
    VALUES (p_site_id, p_sha256, p_size, 'uploaded', now())
    ON CONFLICT (site_id, sha256) DO UPDATE
       SET size = EXCLUDED.size, state = 'uploaded', upload_id = NULL, uploaded_at = now();

    WITH img AS (UPDATE images SET blob_state = 'uploaded'
                  WHERE site_id = p_site_id AND blob_sha256 = p_sha256
                    AND blob_state <> 'uploaded'
                 RETURNING id),
         cap AS (UPDATE captures SET blob_state = 'uploaded'
                  WHERE site_id = p_site_id AND blob_sha256 = p_sha256
                    AND blob_state <> 'uploaded'
                 RETURNING id),
         pf AS (UPDATE project_files SET blob_state = 'uploaded'
                 WHERE site_id = p_site_id AND blob_sha256 = p_sha256
                   AND blob_state <> 'uploaded'
                RETURNING id),
         marked AS (SELECT 'images'::text AS table_name, id FROM img
                    UNION ALL SELECT 'captures', id FROM cap
                    UNION ALL SELECT 'project_files', id FROM pf),
         served AS (UPDATE scsync_blob_requests SET state = 'served', served_at = now()
                     WHERE site_id = p_site_id AND sha256 = p_sha256 AND state = 'open'
                    RETURNING id),
         published AS (SELECT scsync_api_publish(
                                  p_site_id, 'record.sync', table_name, id, NULL,
                                  jsonb_build_object('state', 'synced',
                                                     'blob_state', 'uploaded',
                                                     'sha256', p_sha256))
                         FROM marked)
    SELECT (SELECT count(*) FROM served), (SELECT count(*) FROM published)
      INTO n_served, n_rows;
    RETURN n_served;
END
$$;
