-- files (local): which file-bearing rows have their blob in the site's sync scope.
--
-- One view over the three file-bearing tables gives every blob a table name, a
-- modality and a record date (captures and project files take both from their
-- image), so the scope rule is written once, here, with no per-table SQL.
CREATE VIEW scsync_file_rows AS
SELECT 'images'::text AS table_name, t.id, t.site_id, t.revision, t.synced_revision,
       t.sync_enabled, t.deleted, t.blob_sha256, t.blob_size, t.blob_state, t.local_path,
       t.file_name, t.content_type, t.modality,
       coalesce(t.study_date, t.created_at::date) AS record_date
  FROM images t
UNION ALL
SELECT 'captures'::text, t.id, t.site_id, t.revision, t.synced_revision,
       t.sync_enabled, t.deleted, t.blob_sha256, t.blob_size, t.blob_state, t.local_path,
       t.file_name, t.content_type, i.modality,
       coalesce(i.study_date, t.created_at::date)
  FROM captures t LEFT JOIN images i ON i.id = t.image_id
UNION ALL
SELECT 'project_files'::text, t.id, t.site_id, t.revision, t.synced_revision,
       t.sync_enabled, t.deleted, t.blob_sha256, t.blob_size, t.blob_state, t.local_path,
       t.file_name, t.content_type, i.modality,
       coalesce(i.study_date, t.created_at::date)
  FROM project_files t LEFT JOIN images i ON i.id = t.image_id;

-- The scope rule. No policy row or mode 'all': everything. Mode 'selective': an
-- explicitly selected record, or, when at least one criterion is set, a record that
-- meets every criterion that is set (table, modality, since date, last N days).
CREATE FUNCTION scsync_blob_in_scope(tbl text, rid bigint, modality text, record_date date)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p.mode IS NULL OR p.mode = 'all' THEN true
        WHEN EXISTS (SELECT 1 FROM scsync_file_selection s
                      WHERE s.table_name = tbl AND s.row_id = rid) THEN true
        WHEN jsonb_array_length(p.tables) = 0 AND jsonb_array_length(p.modalities) = 0
             AND p.since_date IS NULL AND p.last_days IS NULL THEN false
        ELSE (jsonb_array_length(p.tables) = 0 OR p.tables @> to_jsonb(tbl))
         AND (jsonb_array_length(p.modalities) = 0
              OR (modality IS NOT NULL AND p.modalities @> to_jsonb(modality)))
         AND (p.since_date IS NULL OR record_date >= p.since_date)
         AND (p.last_days IS NULL OR record_date >= current_date - p.last_days)
    END
    FROM (SELECT 1) AS one LEFT JOIN scsync_file_policy p ON true
$$;
