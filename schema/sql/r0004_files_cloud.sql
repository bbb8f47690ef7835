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
