-- Queries of the files area (api/blobs.py, replicator/files/). SQLAlchemy binds (:name)
-- unless a block says it is a psycopg template ({table} etc. filled with
-- psycopg.sql.Identifier, %(name)s binds).

-- ==== cloud: blobs ========================================================================

-- name: files_blob_get
SELECT size, state, upload_id FROM scsync_blobs WHERE site_id = :site_id AND sha256 = :sha256;

-- name: files_blob_pending
INSERT INTO scsync_blobs (site_id, sha256, size, state, upload_id)
VALUES (:site_id, :sha256, :size, 'pending', :upload_id)
ON CONFLICT (site_id, sha256) DO UPDATE
   SET size = EXCLUDED.size, upload_id = EXCLUDED.upload_id, state = 'pending'
 WHERE scsync_blobs.state <> 'uploaded';

-- name: files_blob_uploaded
INSERT INTO scsync_blobs (site_id, sha256, size, state, uploaded_at)
VALUES (:site_id, :sha256, :size, 'uploaded', now())
ON CONFLICT (site_id, sha256) DO UPDATE
   SET size = EXCLUDED.size, state = 'uploaded', upload_id = NULL, uploaded_at = now();

-- name: files_blob_forget
DELETE FROM scsync_blobs WHERE site_id = :site_id AND sha256 = :sha256 AND state <> 'uploaded';

-- name: files_blob_deleted
UPDATE scsync_blobs SET state = 'deleted', upload_id = NULL
 WHERE site_id = :site_id AND sha256 = :sha256;

-- name: files_blob_referenced
SELECT EXISTS (SELECT 1 FROM images WHERE site_id = :site_id AND blob_sha256 = :sha256
                                       AND lifecycle = 'active' AND blob_state = 'uploaded')
    OR EXISTS (SELECT 1 FROM captures WHERE site_id = :site_id AND blob_sha256 = :sha256
                                         AND lifecycle = 'active' AND blob_state = 'uploaded')
    OR EXISTS (SELECT 1 FROM project_files WHERE site_id = :site_id AND blob_sha256 = :sha256
                                              AND lifecycle = 'active'
                                              AND blob_state = 'uploaded');

-- Rows that reference a blob just verified: blob_state is bookkeeping, so this moves
-- no revision; the cloud's blob_state trigger confirms 'uploaded' from scsync_blobs.
-- name: files_mark_uploaded_images
UPDATE images SET blob_state = 'uploaded'
 WHERE site_id = :site_id AND blob_sha256 = :sha256 AND blob_state <> 'uploaded'
RETURNING id;

-- name: files_mark_uploaded_captures
UPDATE captures SET blob_state = 'uploaded'
 WHERE site_id = :site_id AND blob_sha256 = :sha256 AND blob_state <> 'uploaded'
RETURNING id;

-- name: files_mark_uploaded_project_files
UPDATE project_files SET blob_state = 'uploaded'
 WHERE site_id = :site_id AND blob_sha256 = :sha256 AND blob_state <> 'uploaded'
RETURNING id;

-- name: files_request_add
INSERT INTO scsync_blob_requests (site_id, sha256, table_name, row_id, requested_by)
VALUES (:site_id, :sha256, :table_name, :row_id, :requested_by)
RETURNING id;

-- name: files_requests_open
SELECT id, sha256, table_name, row_id, requested_at FROM scsync_blob_requests
 WHERE site_id = :site_id AND state = 'open'
 ORDER BY id
 LIMIT :limit;

-- name: files_requests_serve
UPDATE scsync_blob_requests SET state = 'served', served_at = now()
 WHERE site_id = :site_id AND sha256 = :sha256 AND state = 'open'
RETURNING id;

-- Events go through the API's event log (schema 0005), which also NOTIFYs listeners.
-- name: files_publish
SELECT scsync_api_publish(:site_id, :type, :table_name, :row_id, NULL,
                          CAST(:payload AS jsonb));

-- ==== local: upload journal ==============================================================

-- name: files_journal_get
SELECT u.upload_id, u.size, u.part_size, p.part_number, p.etag
  FROM scsync_uploads u LEFT JOIN scsync_upload_parts p ON p.sha256 = u.sha256
 WHERE u.sha256 = :sha256
 ORDER BY p.part_number;

-- name: files_journal_begin
INSERT INTO scsync_uploads (sha256, upload_id, size, part_size)
VALUES (:sha256, :upload_id, :size, :part_size);

-- name: files_journal_part
INSERT INTO scsync_upload_parts (sha256, part_number, etag, size)
VALUES (:sha256, :part_number, :etag, :size)
ON CONFLICT (sha256, part_number) DO UPDATE SET etag = EXCLUDED.etag, size = EXCLUDED.size;

-- name: files_journal_finish
DELETE FROM scsync_uploads WHERE sha256 = :sha256;
