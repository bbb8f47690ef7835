-- Named queries of the API (api/store.py). These run on psycopg 3 directly, so
-- parameters are psycopg placeholders (%(name)s) and varying identifiers are
-- psycopg.sql placeholders ({table}, {columns}, ...) filled with sql.Identifier.

-- name: api_node
SELECT node_id, side, site_id FROM scsync_node

-- name: api_auth_user
SELECT a.id, a.site_id, a.username, a.password_hash, a.role,
       coalesce(v.version, 0) AS token_version, coalesce(v.disabled, false) AS disabled
  FROM user_accounts a
  LEFT JOIN scsync_token_versions v ON v.kind = 'account' AND v.key = a.id
 WHERE a.username = %(username)s AND a.site_id = %(site_id)s AND NOT a.deleted

-- A sign-in form names the clinic (cloud).
-- name: api_site_by_name
SELECT site_id FROM scsync_sites WHERE name = %(name)s AND NOT disabled

-- name: api_site_enabled
SELECT NOT disabled AS enabled FROM scsync_sites WHERE site_id = %(site_id)s

-- name: api_records_list
SELECT * FROM {table}
 WHERE (%(site)s::int IS NULL OR site_id = %(site)s::int)
   AND (%(patient)s::bigint IS NULL OR {patient_col} = %(patient)s::bigint)
   AND (%(modality)s::text IS NULL OR {modality_col} = %(modality)s::text)
   AND (%(since)s::timestamptz IS NULL OR updated_at >= %(since)s::timestamptz)
   AND (%(until)s::timestamptz IS NULL OR updated_at < %(until)s::timestamptz)
   AND (%(deleted)s::boolean IS NULL OR deleted = %(deleted)s::boolean)
   AND (%(sync)s::text IS NULL
        OR (%(sync)s::text = 'synced' AND synced AND NOT in_conflict)
        OR (%(sync)s::text = 'pending' AND NOT synced AND NOT in_conflict AND sync_enabled)
        OR (%(sync)s::text = 'conflict' AND in_conflict)
        OR (%(sync)s::text = 'off' AND NOT sync_enabled))
   AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
 ORDER BY id DESC
 LIMIT %(limit)s

-- name: api_record_get
SELECT * FROM {table}
 WHERE id = %(id)s AND (%(site)s::int IS NULL OR site_id = %(site)s::int)

-- name: api_record_get_for_update
SELECT * FROM {table}
 WHERE id = %(id)s AND (%(site)s::int IS NULL OR site_id = %(site)s::int)
   FOR UPDATE

-- name: api_ref_site
SELECT site_id FROM {table} WHERE id = %(id)s

-- name: api_record_insert
INSERT INTO {table} ({columns}) VALUES ({values}) RETURNING *

-- Every API save is a save of a one-shot edit: the version becomes (A+1).0.
-- name: api_record_update
UPDATE {table}
   SET {assignments}, version_major = version_major + 1, version_minor = 0
 WHERE id = %(id)s AND (%(site)s::int IS NULL OR site_id = %(site)s::int)
RETURNING *

-- A save inside an edit session: the caller computes the version (A.B rule).
-- name: api_record_update_versioned
UPDATE {table}
   SET {assignments}, version_major = %(version_major)s, version_minor = %(version_minor)s
 WHERE id = %(id)s AND (%(site)s::int IS NULL OR site_id = %(site)s::int)
RETURNING *

-- name: api_record_soft_delete
UPDATE {table} SET deleted = true
 WHERE id = %(id)s AND (%(site)s::int IS NULL OR site_id = %(site)s::int)
RETURNING *

-- name: api_record_set_sync
UPDATE {table} SET sync_enabled = %(enabled)s
 WHERE id = %(id)s AND (%(site)s::int IS NULL OR site_id = %(site)s::int)
RETURNING *

-- name: api_history_list
SELECT seq, revision, version_major, version_minor, op, origin, saved_at, row_data
  FROM scsync_history
 WHERE table_name = %(table)s AND row_id = %(id)s
   AND (%(site)s::int IS NULL OR site_id = %(site)s::int)
 ORDER BY seq DESC
 LIMIT %(limit)s

-- name: api_history_revision
SELECT row_data FROM scsync_history
 WHERE table_name = %(table)s AND row_id = %(id)s AND revision = %(revision)s
   AND (%(site)s::int IS NULL OR site_id = %(site)s::int)

-- name: api_audit_insert
INSERT INTO scsync_audit (actor, side, site_id, action, table_name, row_id, detail)
VALUES (%(actor)s, %(side)s, %(site)s, %(action)s, %(table)s, %(row_id)s, %(detail)s)

-- name: api_publish
SELECT scsync_api_publish(%(site)s, %(type)s, %(table)s, %(row_id)s, %(patient)s,
                          %(payload)s::jsonb) AS id

-- Everything after client event id `after`, batch rows fanned out per record, late
-- commits below it included (schema/sql/baseline_capture.sql).
-- name: api_events_after
SELECT id, at, site_id, type, table_name, row_id, patient_id, payload
  FROM scsync_api_events_after(%(after)s, %(site)s, %(limit)s)

-- The end of a transaction of the API: one wake-up of the listeners if it wrote
-- anything (a read, a sign-in, a lookup takes no NOTIFY lock and wakes no one).
-- name: api_wake
SELECT scsync_wake() WHERE pg_current_xact_id_if_assigned() IS NOT NULL

-- name: api_events_max
SELECT scsync_api_events_newest() AS id

-- name: api_conflicts_list
SELECT id, table_name, row_id, site_id, base_revision, local_revision, cloud_revision,
       detected_on, detected_at, status, resolution, resolved_by, resolved_at
  FROM scsync_conflicts
 WHERE (%(site)s::int IS NULL OR site_id = %(site)s::int)
   AND (%(status)s::text IS NULL OR status = %(status)s::text)
   AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
 ORDER BY id DESC
 LIMIT %(limit)s

-- name: api_conflict_get
SELECT id, table_name, row_id, site_id, base_revision, local_revision, cloud_revision,
       local_row, cloud_row, detected_on, detected_at, status, resolution, resolved_by,
       resolved_at
  FROM scsync_conflicts
 WHERE id = %(id)s AND (%(site)s::int IS NULL OR site_id = %(site)s::int)

-- name: api_status_outbox
SELECT count(*) AS depth, min(created_at) AS oldest
  FROM scsync_outbox WHERE (%(site)s::int IS NULL OR site_id = %(site)s::int)

-- name: api_status_conflicts
SELECT count(*) AS open FROM scsync_conflicts
 WHERE status = 'open' AND (%(site)s::int IS NULL OR site_id = %(site)s::int)

-- name: api_status_cursors
SELECT lane, site_id, last_applied_at, last_source_commit_at, rows_applied
  FROM scsync_replication_cursor
 WHERE (%(site)s::int IS NULL OR site_id = %(site)s::int)
 ORDER BY lane, site_id

-- name: api_setting_get
SELECT value FROM settings WHERE site_id = %(site)s AND key = %(key)s AND NOT deleted

-- name: api_setting_put
INSERT INTO settings (site_id, key, value) VALUES (%(site)s, %(key)s, %(value)s::jsonb)
ON CONFLICT (site_id, key) DO UPDATE SET value = EXCLUDED.value, deleted = false
RETURNING value

-- name: api_relay_cursor
INSERT INTO scsync_api_relay (name) VALUES (%(name)s)
ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
RETURNING last_event_id

-- name: api_relay_advance
UPDATE scsync_api_relay SET last_event_id = greatest(last_event_id, %(id)s), updated_at = now()
 WHERE name = %(name)s

-- name: api_try_leader
SELECT pg_try_advisory_lock(%(key)s) AS leader

-- name: api_policy_get
SELECT mode, tables, modalities, since_date, last_days, old_data, updated_at
  FROM scsync_file_policy

-- name: api_policy_put
INSERT INTO scsync_file_policy (singleton, mode, tables, modalities, since_date, last_days,
                                old_data, updated_at)
VALUES (true, %(mode)s, %(tables)s, %(modalities)s, %(since_date)s, %(last_days)s,
        %(old_data)s, now())
ON CONFLICT (singleton) DO UPDATE
   SET mode = EXCLUDED.mode, tables = EXCLUDED.tables, modalities = EXCLUDED.modalities,
       since_date = EXCLUDED.since_date, last_days = EXCLUDED.last_days,
       old_data = EXCLUDED.old_data, updated_at = now()
RETURNING mode, tables, modalities, since_date, last_days, old_data, updated_at

-- name: api_accounts_disabled
SELECT key FROM scsync_token_versions
 WHERE kind = 'account' AND disabled AND key = ANY(%(ids)s::bigint[])
