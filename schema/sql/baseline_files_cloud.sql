-- files (cloud): a row's blob_state follows what the cloud has verified, and the
-- per-record sync switch drives the cloud copy's lifecycle.

-- BEFORE INSERT OR UPDATE on file-bearing tables: 'uploaded' exactly when the blob is
-- recorded as uploaded for the row's own site (the blobs API records it only after it
-- verified size and sha256), otherwise 'remote' (the file is still on the site: metadata
-- only, or on its way; the blobs API turns the rows 'uploaded' when it records the blob).
-- Whatever a writer sets (the core's apply writes 'pending' for an arriving blob), a row
-- never claims a file the cloud has not verified. Security definer: site roles write
-- these tables but do not read the cloud's blob records directly.
CREATE FUNCTION scsync_files_blob_state() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF NEW.blob_sha256 IS NULL THEN
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM scsync_blobs b
                WHERE b.site_id = NEW.site_id AND b.sha256 = NEW.blob_sha256
                  AND b.state = 'uploaded') THEN
        NEW.blob_state := 'uploaded';
    ELSE
        NEW.blob_state := 'remote';
    END IF;
    RETURN NEW;
END
$$;

-- BEFORE INSERT OR UPDATE on every synced table: turning sync off for a record
-- (locally, arriving by push, or on the cloud) marks the cloud copy deleted; turning
-- it back on makes it active again (unless the record itself is deleted). The row itself
-- is never hard-deleted.
CREATE FUNCTION scsync_files_lifecycle() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT NEW.sync_enabled THEN
        NEW.lifecycle := 'deleted';
    ELSIF TG_OP = 'UPDATE' AND NOT OLD.sync_enabled AND NOT NEW.deleted THEN
        NEW.lifecycle := 'active';
    END IF;
    RETURN NEW;
END
$$;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT table_name, file_column FROM scsync_synced_tables LOOP
        EXECUTE format('CREATE TRIGGER files_lifecycle BEFORE INSERT OR UPDATE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION scsync_files_lifecycle()', t.table_name);
        IF t.file_column IS NOT NULL THEN
            EXECUTE format('CREATE TRIGGER files_blob_state BEFORE INSERT OR UPDATE ON %I '
                           'FOR EACH ROW EXECUTE FUNCTION scsync_files_blob_state()',
                           t.table_name);
        END IF;
    END LOOP;
END
$$;

-- blob_record (cloud): what the blobs API does once it has verified an upload, in one
-- call (one round trip instead of BEGIN, two statements and COMMIT).
--
-- The blob is recorded 'uploaded' first; then, in a later statement so that the rows'
-- blob_state trigger (above) finds it, every row of the site referencing it turns
-- 'uploaded' (bookkeeping: no revision moves), the blob's open requests are served and
-- a record.sync event goes out per row (scsync_api_publish, baseline_api.sql). Returns the number
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
