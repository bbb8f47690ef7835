-- Queries of the files area (api/blobs/, replicator/files/, api/sync_files.py):
-- psycopg placeholders (%(name)s); {table}, {stage}, ... are psycopg.sql.Identifier
-- slots filled by schema.database.named.

-- ==== cloud: blobs ========================================================================

-- name: files_blob_get
SELECT size, state, upload_id FROM scsync_blobs WHERE site_id = %(site_id)s AND sha256 = %(sha256)s;

-- No row returned: the blob is already uploaded (and stays so).
-- name: files_blob_pending
INSERT INTO scsync_blobs (site_id, sha256, size, state, upload_id)
VALUES (%(site_id)s, %(sha256)s, %(size)s, 'pending', %(upload_id)s)
ON CONFLICT (site_id, sha256) DO UPDATE
   SET size = EXCLUDED.size, upload_id = EXCLUDED.upload_id, state = 'pending'
 WHERE scsync_blobs.state <> 'uploaded'
RETURNING state;

-- A verified upload: the blob, the rows referencing it, its requests, the events
-- (schema/sql/baseline_files_cloud.sql); the number of requests served.
-- name: files_blob_record_uploaded
SELECT scsync_blob_record_uploaded(%(site_id)s, %(sha256)s, %(size)s) AS served;

-- name: files_blob_forget
DELETE FROM scsync_blobs WHERE site_id = %(site_id)s AND sha256 = %(sha256)s AND state <> 'uploaded';

-- name: files_blob_deleted
UPDATE scsync_blobs SET state = 'deleted', upload_id = NULL
 WHERE site_id = %(site_id)s AND sha256 = %(sha256)s;

-- name: files_blob_referenced
SELECT EXISTS (SELECT 1 FROM images WHERE site_id = %(site_id)s AND blob_sha256 = %(sha256)s
                                       AND lifecycle = 'active' AND blob_state = 'uploaded')
    OR EXISTS (SELECT 1 FROM captures WHERE site_id = %(site_id)s AND blob_sha256 = %(sha256)s
                                         AND lifecycle = 'active' AND blob_state = 'uploaded')
    OR EXISTS (SELECT 1 FROM project_files WHERE site_id = %(site_id)s AND blob_sha256 = %(sha256)s
                                              AND lifecycle = 'active'
                                              AND blob_state = 'uploaded');

-- name: files_request_add
INSERT INTO scsync_blob_requests (site_id, sha256, table_name, row_id, requested_by)
VALUES (%(site_id)s, %(sha256)s, %(table_name)s, %(row_id)s, %(requested_by)s)
RETURNING id;

-- name: files_requests_open
SELECT id, sha256, table_name, row_id, requested_at FROM scsync_blob_requests
 WHERE site_id = %(site_id)s AND state = 'open'
 ORDER BY id
 LIMIT %(limit)s;

-- Events go through the API's event log (schema 0005), which also NOTIFYs listeners.
-- name: files_publish
SELECT scsync_api_publish(%(site_id)s, %(type)s, %(table_name)s, %(row_id)s, NULL,
                          CAST(%(payload)s AS jsonb));

-- ==== local: upload journal ==============================================================

-- name: files_journal_get
SELECT u.upload_id, u.size, u.part_size, p.part_number, p.etag
  FROM scsync_uploads u LEFT JOIN scsync_upload_parts p ON p.sha256 = u.sha256
 WHERE u.sha256 = %(sha256)s
 ORDER BY p.part_number;

-- name: files_journal_begin
INSERT INTO scsync_uploads (sha256, upload_id, size, part_size)
VALUES (%(sha256)s, %(upload_id)s, %(size)s, %(part_size)s);

-- name: files_journal_part
INSERT INTO scsync_upload_parts (sha256, part_number, etag, size)
VALUES (%(sha256)s, %(part_number)s, %(etag)s, %(size)s)
ON CONFLICT (sha256, part_number) DO UPDATE SET etag = EXCLUDED.etag, size = EXCLUDED.size;

-- name: files_journal_finish
DELETE FROM scsync_uploads WHERE sha256 = %(sha256)s;

-- ==== local: scope policy ================================================================

-- name: files_policy_get
SELECT mode, tables, modalities, since_date, last_days, old_data FROM scsync_file_policy;

-- name: files_policy_set
INSERT INTO scsync_file_policy (singleton, mode, tables, modalities, since_date, last_days,
                                old_data, updated_at)
VALUES (true, %(mode)s, CAST(%(tables)s AS jsonb), CAST(%(modalities)s AS jsonb), %(since_date)s,
        %(last_days)s, %(old_data)s, now())
ON CONFLICT (singleton) DO UPDATE
   SET mode = EXCLUDED.mode, tables = EXCLUDED.tables, modalities = EXCLUDED.modalities,
       since_date = EXCLUDED.since_date, last_days = EXCLUDED.last_days,
       old_data = EXCLUDED.old_data, updated_at = now();

-- name: files_select
INSERT INTO scsync_file_selection (table_name, row_id) VALUES (%(table_name)s, %(row_id)s)
ON CONFLICT DO NOTHING;

-- name: files_unselect
DELETE FROM scsync_file_selection WHERE table_name = %(table_name)s AND row_id = %(row_id)s;

-- name: files_row_in_scope
SELECT scsync_blob_in_scope(table_name, id, modality, record_date) AS in_scope
  FROM scsync_file_rows
 WHERE table_name = %(table_name)s AND id = %(row_id)s;

-- The per-record switch of a local record (a content change: it goes out as one).
-- name: files_sync_enabled_set
UPDATE {table} SET sync_enabled = %(enabled)s WHERE id = %(row_id)s RETURNING site_id;

-- name: files_out_of_scope_crossed
SELECT table_name, id, blob_sha256 FROM scsync_file_rows
 WHERE site_id = %(site_id)s AND synced_revision IS NOT NULL AND sync_enabled
   AND blob_sha256 IS NOT NULL
   AND NOT scsync_blob_in_scope(table_name, id, modality, record_date)
 ORDER BY id DESC;

-- ==== cloud: a site's records, through the cloud API (api/sync_files.py; psycopg
-- binds; the table is an identifier the API checked). Each runs after
-- sync_begin (the acting site) and sync_records_check_keys (a record of another site
-- named refuses the whole request), as replicated bookkeeping: no new revision, so the
-- later push of the local change fast-forwards. ==========================================

-- name: sync_records_check_keys
SELECT scsync_replicator_check_keys(%(keys)s::jsonb, %(site_id)s);

-- name: sync_records_switch
UPDATE {table} SET sync_enabled = %(enabled)s
 WHERE id = %(row_id)s AND site_id = %(site_id)s RETURNING id;

-- Copies that left scope: only active ones change (idempotent).
-- name: sync_records_lifecycle
UPDATE {table} SET lifecycle = %(lifecycle)s
 WHERE id = ANY(%(ids)s) AND site_id = %(site_id)s AND lifecycle = 'active' RETURNING id;

-- name: sync_records_blob_remote
UPDATE {table} SET blob_state = 'remote'
 WHERE id = ANY(%(ids)s) AND site_id = %(site_id)s RETURNING id;

-- name: sync_records_restore
UPDATE {table} SET lifecycle = 'active'
 WHERE id = %(row_id)s AND site_id = %(site_id)s AND lifecycle = 'backed_up' RETURNING id;

-- ==== cloud: a site's backfill, through the cloud API (api/sync_files.py; psycopg
-- binds; the table and stage are identifiers, columns and values identifier lists) =======

-- Which of these blobs the cloud has verified for the site.
-- name: sync_backfill_cloud_has
SELECT sha256 FROM scsync_blobs
 WHERE site_id = %(site_id)s AND sha256 = ANY(%(shas)s) AND state = 'uploaded';

-- Every column of the table: the client COPYs the ones it names, in its order.
-- name: sync_backfill_stage_create
CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS
    AS SELECT * FROM {table} WITH NO DATA;

-- name: sync_backfill_stage_copy_in
COPY {stage} ({columns}) FROM STDIN (FORMAT BINARY);

-- name: sync_backfill_check_refs
SELECT scsync_sync_check_refs(%(site_id)s, %(table_name)s, %(stage)s::regclass);

-- Fast-forward of rows the cloud has never seen (absent = null base); a row already
-- there is left alone (duplicate when its revision matches, else the core's conflict).
-- The wall is in the same statement: a staged row of any site but the token's refuses
-- the whole statement, naming the row (the function runs for such a row only). Every
-- inserted revision is recorded in history: here when the triggers are off (bulk), by the
-- capture trigger itself otherwise (history false: a second to_jsonb of every row
-- that then met the trigger's history row in ON CONFLICT was pure cost).
-- It answers the rows the cloud holds as sent (id, revision): those it inserted, and of
-- the others those already there with the same revision (duplicates). An id the cloud
-- holds for another site refuses the whole batch (nothing applied). The statement's
-- snapshot does not show a row another transaction committed meanwhile: such a row is
-- left out (not marked at the site; the next run finds it a duplicate). One statement
-- instead of a second join of the whole stage after the apply.
-- {file_column} / {file_value}: empty for a table without files; for a file-bearing table
-- ", blob_state" and the blob_state it takes: 'uploaded' only for a blob the cloud has
-- verified for the site (whatever the site says), else 'remote' (metadata only)
-- (api/sync_files.py composes them from sync_backfill_blob_state).
-- name: sync_backfill_apply
WITH ins AS (
    INSERT INTO {table} ({columns}, synced_revision, last_synced_at{file_column})
    SELECT {values}, s.revision, now(){file_value} FROM {stage} s
     WHERE CASE WHEN s.site_id = %(site_id)s THEN true
                ELSE scsync_sync_refuse(%(site_id)s, %(table_name)s, s.id,
                                        'it is a row of site '
                                        || coalesce(s.site_id::text, 'none')) END
    ON CONFLICT (id) DO NOTHING
    RETURNING *
), hist AS (
    INSERT INTO scsync_history (table_name, row_id, site_id, revision, version_major,
                                version_minor, op, row_data, origin)
    SELECT %(table_name)s, ins.id, ins.site_id, ins.revision, ins.version_major,
           ins.version_minor, 'I', to_jsonb(ins), 'replicated'
      FROM ins
     WHERE %(history)s
    ON CONFLICT (table_name, row_id, revision) DO NOTHING
)
SELECT ins.id, ins.revision FROM ins
UNION ALL
SELECT s.id, s.revision FROM {stage} s JOIN {table} c ON c.id = s.id
 WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.id = s.id)
   AND CASE WHEN c.site_id = s.site_id THEN c.revision = s.revision
            ELSE scsync_sync_refuse(%(site_id)s, %(table_name)s, s.id,
                                    'the cloud holds that id for another site') END;

-- name: sync_backfill_blob_state
CASE WHEN EXISTS (SELECT 1 FROM scsync_blobs b
                   WHERE b.site_id = s.site_id AND b.sha256 = s.blob_sha256
                     AND b.state = 'uploaded')
     THEN 'uploaded' ELSE 'remote' END

-- Whether this role may apply without triggers (as logical replication's apply does).
-- name: sync_backfill_may_bulk
SELECT current_setting('is_superuser') = 'on'
       OR has_parameter_privilege('session_replication_role', 'SET');

-- name: sync_backfill_bulk
SET LOCAL session_replication_role = replica


-- ==== local: backfill and on-demand (psycopg binds: %(name)s; {table}, {stage},
-- {columns}, ... are psycopg.sql.Identifier / composed lists) ==============================

-- Only a blob of a record with sync on is served (another record may hold the same one).
-- name: files_local_blob_file
SELECT table_name, id, local_path, blob_size FROM scsync_file_rows
 WHERE site_id = %(site_id)s AND blob_sha256 = %(sha256)s AND local_path IS NOT NULL
   AND blob_state = 'present' AND sync_enabled
 ORDER BY id DESC
 LIMIT 1;

-- Rows of one table that never crossed, newest first, below the keyset cursor.
-- The next batch of rows that never crossed, newest first.
-- name: files_backfill_next_ids
SELECT id FROM {table}
 WHERE site_id = %(site_id)s AND synced_revision IS NULL AND sync_enabled
   AND id < %(before)s
 ORDER BY id DESC
 LIMIT %(limit)s;

-- A batch's rows as they are now; one that crossed or was switched off since its id was
-- read is left out (the live lanes have it).
-- name: files_backfill_copy_out_ids
COPY (SELECT {columns} FROM {table}
       WHERE id = ANY(%(ids)s::bigint[]) AND site_id = %(site_id)s
         AND synced_revision IS NULL AND sync_enabled
       ORDER BY id DESC) TO STDOUT (FORMAT BINARY);

-- The next file-bearing rows, with what the upload needs and whether the blob is in scope.
-- name: files_backfill_file_rows
SELECT id, blob_sha256, blob_size, blob_state, local_path,
       scsync_blob_in_scope(table_name, id, modality, record_date) AS in_scope
  FROM scsync_file_rows
 WHERE table_name = %(table_name)s AND site_id = %(site_id)s
   AND synced_revision IS NULL AND sync_enabled AND id < %(before)s
 ORDER BY id DESC
 LIMIT %(limit)s;

-- Rows that crossed, whose blob is in scope (now): candidates after a scope change.
-- name: files_backfill_crossed_in_scope
SELECT id, blob_sha256, blob_size, blob_state, local_path, true AS in_scope
  FROM scsync_file_rows
 WHERE table_name = %(table_name)s AND site_id = %(site_id)s
   AND synced_revision IS NOT NULL AND sync_enabled AND blob_sha256 IS NOT NULL
   AND blob_state = 'present' AND id < %(before)s
   AND scsync_blob_in_scope(table_name, id, modality, record_date)
 ORDER BY id DESC
 LIMIT %(limit)s;

-- The rows are found through the primary key (id = ANY): joined to the unnest alone, on
-- a table of ~100,000 rows the planner hashed the whole table for every batch (a
-- 5,000-row mark 77 -> 49 ms, medians of 10; on 1,000,000 rows it took the index anyway).
-- name: files_backfill_mark_synced
UPDATE {table} t SET synced_revision = a.rev, last_synced_at = now()
  FROM unnest(%(ids)s::bigint[], %(revs)s::bigint[]) AS a(id, rev)
 WHERE t.id = ANY(%(ids)s::bigint[]) AND t.id = a.id AND t.synced_revision IS NULL;

-- name: files_backfill_remaining_rows
SELECT count(*) FROM {table}
 WHERE site_id = %(site_id)s AND synced_revision IS NULL AND sync_enabled;

-- name: files_backfill_remaining_bytes
SELECT coalesce(sum(blob_size), 0) FROM scsync_file_rows
 WHERE site_id = %(site_id)s AND synced_revision IS NULL AND sync_enabled
   AND blob_sha256 IS NOT NULL
   AND scsync_blob_in_scope(table_name, id, modality, record_date);

-- name: files_backfill_may_bulk
SELECT current_setting('is_superuser') = 'on'
       OR has_parameter_privilege('session_replication_role', 'SET');

-- name: files_backfill_get
SELECT state, rows_per_s, bytes_per_s, rows_total, bytes_total, rows_done, bytes_done,
       run_started_at, run_rows, run_bytes, updated_at
  FROM scsync_backfill;

-- name: files_backfill_start
INSERT INTO scsync_backfill (singleton, state, rows_per_s, bytes_per_s, rows_total,
                             bytes_total, rows_done, bytes_done, run_started_at, run_rows,
                             run_bytes, updated_at)
VALUES (true, 'running', %(rows_per_s)s, %(bytes_per_s)s, %(rows_total)s, %(bytes_total)s,
        %(rows_done)s, %(bytes_done)s, now(), 0, 0, now())
ON CONFLICT (singleton) DO UPDATE
   SET state = 'running', rows_per_s = EXCLUDED.rows_per_s, bytes_per_s = EXCLUDED.bytes_per_s,
       rows_total = EXCLUDED.rows_total, bytes_total = EXCLUDED.bytes_total,
       rows_done = EXCLUDED.rows_done, bytes_done = EXCLUDED.bytes_done,
       run_started_at = now(), run_rows = 0, run_bytes = 0, updated_at = now();

-- name: files_backfill_progress
UPDATE scsync_backfill
   SET rows_done = %(rows_done)s, bytes_done = %(bytes_done)s, run_rows = %(run_rows)s,
       run_bytes = %(run_bytes)s, updated_at = now();

-- name: files_backfill_set_state
INSERT INTO scsync_backfill (singleton, state, updated_at) VALUES (true, %(state)s, now())
ON CONFLICT (singleton) DO UPDATE SET state = EXCLUDED.state, updated_at = now();

-- name: files_backfill_publish
SELECT scsync_api_publish(%(site_id)s, 'sync.progress', NULL, NULL, NULL, %(payload)s::jsonb);

-- ==== local: hooks for the core's live lanes (psycopg binds) ==============================

-- A record with sync off sends no file (nor does anything else of it cross).
-- name: files_lane_row
SELECT id, blob_sha256, blob_size, blob_state, local_path,
       sync_enabled AND scsync_blob_in_scope(table_name, id, modality, record_date) AS in_scope
  FROM scsync_file_rows
 WHERE table_name = %(table_name)s AND id = %(row_id)s;

-- name: files_lane_pending
SELECT table_name, id FROM scsync_file_rows
 WHERE blob_state IN ('remote', 'pending') AND blob_sha256 IS NOT NULL
 ORDER BY id DESC
 LIMIT %(limit)s;

-- blob_state and local_path are bookkeeping: no new revision, nothing enters the outbox.
-- name: files_lane_mark_present
UPDATE {table} SET blob_state = 'present', local_path = %(local_path)s
 WHERE id = %(row_id)s AND blob_sha256 = %(sha256)s;

-- name: files_outbox_pending
SELECT EXISTS (SELECT 1 FROM scsync_outbox WHERE site_id = %(site_id)s);
