-- The schema of a local database, read from its catalogs by schema/dump.py.
-- Generated: regenerate with `python -m schema.dump` (docs/schema.md); not for restore.

-- ==== types ====

CREATE TYPE scsync_read_key AS (
    ord bigint,
    seqs bigint[],
    table_name text,
    row_id bigint,
    last_op text,
    last_revision bigint,
    last_base bigint,
    source_commit_at timestamp with time zone,
    present boolean,
    off boolean,
    synced_rev bigint,
    off_seq bigint,
    held boolean
);

CREATE TYPE scsync_stage_row AS (
    ord bigint,
    table_name text,
    row_id bigint,
    op text,
    revision bigint,
    base bigint,
    row_data jsonb,
    resolution jsonb,
    dest_row jsonb,
    dest_revision bigint,
    outcome text,
    conflict_id bigint
);

-- ==== sequences ====

CREATE SEQUENCE scsync_revision_seq AS bigint
    START -1 INCREMENT -1 MINVALUE -9223372036854775808 MAXVALUE -1 CACHE 1;

CREATE SEQUENCE scsync_snowflake_l AS bigint
    START 1 INCREMENT 1 MINVALUE 1 MAXVALUE 9223372036854775807 CACHE 1;

-- ==== tables ====

CREATE TABLE alembic_version (
    version_num character varying(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

CREATE TABLE captures (
    id bigint DEFAULT scsync_snowflake() NOT NULL,
    site_id integer DEFAULT scsync_node_site() NOT NULL,
    version_major integer DEFAULT 1 NOT NULL,
    version_minor integer DEFAULT 0 NOT NULL,
    revision bigint DEFAULT nextval('scsync_revision_seq'::regclass) NOT NULL,
    synced_revision bigint,
    synced boolean GENERATED ALWAYS AS ((NOT (revision IS DISTINCT FROM synced_revision))) STORED,
    last_synced_at timestamp with time zone,
    deleted boolean DEFAULT false NOT NULL,
    sync_enabled boolean DEFAULT true NOT NULL,
    in_conflict boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    patient_id bigint NOT NULL,
    image_id bigint,
    description text,
    blob_sha256 text,
    blob_size bigint,
    blob_state text DEFAULT 'present'::text NOT NULL,
    file_name text,
    content_type text,
    local_path text,
    CONSTRAINT captures_image_id_fkey FOREIGN KEY (image_id) REFERENCES images(id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT captures_patient_id_fkey FOREIGN KEY (patient_id) REFERENCES patients(id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT captures_pkey PRIMARY KEY (id),
    CONSTRAINT ck_captures_blob_sha256 CHECK (((blob_sha256 IS NULL) OR (blob_sha256 ~ '^[0-9a-f]{64}$'::text))),
    CONSTRAINT ck_captures_blob_state CHECK ((blob_state = ANY (ARRAY['present'::text, 'pending'::text, 'remote'::text])))
);

CREATE TABLE doctors (
    id bigint DEFAULT scsync_snowflake() NOT NULL,
    site_id integer DEFAULT scsync_node_site() NOT NULL,
    version_major integer DEFAULT 1 NOT NULL,
    version_minor integer DEFAULT 0 NOT NULL,
    revision bigint DEFAULT nextval('scsync_revision_seq'::regclass) NOT NULL,
    synced_revision bigint,
    synced boolean GENERATED ALWAYS AS ((NOT (revision IS DISTINCT FROM synced_revision))) STORED,
    last_synced_at timestamp with time zone,
    deleted boolean DEFAULT false NOT NULL,
    sync_enabled boolean DEFAULT true NOT NULL,
    in_conflict boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    name text NOT NULL,
    license_no text,
    email text,
    phone text,
    CONSTRAINT doctors_pkey PRIMARY KEY (id)
);

CREATE TABLE images (
    id bigint DEFAULT scsync_snowflake() NOT NULL,
    site_id integer DEFAULT scsync_node_site() NOT NULL,
    version_major integer DEFAULT 1 NOT NULL,
    version_minor integer DEFAULT 0 NOT NULL,
    revision bigint DEFAULT nextval('scsync_revision_seq'::regclass) NOT NULL,
    synced_revision bigint,
    synced boolean GENERATED ALWAYS AS ((NOT (revision IS DISTINCT FROM synced_revision))) STORED,
    last_synced_at timestamp with time zone,
    deleted boolean DEFAULT false NOT NULL,
    sync_enabled boolean DEFAULT true NOT NULL,
    in_conflict boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    patient_id bigint NOT NULL,
    doctor_id bigint,
    kind text DEFAULT '2d'::text NOT NULL,
    modality text,
    study_date date,
    description text,
    tags jsonb DEFAULT '[]'::jsonb NOT NULL,
    blob_sha256 text,
    blob_size bigint,
    blob_state text DEFAULT 'present'::text NOT NULL,
    file_name text,
    content_type text,
    local_path text,
    CONSTRAINT ck_images_blob_sha256 CHECK (((blob_sha256 IS NULL) OR (blob_sha256 ~ '^[0-9a-f]{64}$'::text))),
    CONSTRAINT ck_images_blob_state CHECK ((blob_state = ANY (ARRAY['present'::text, 'pending'::text, 'remote'::text]))),
    CONSTRAINT ck_images_kind CHECK ((kind = ANY (ARRAY['2d'::text, '3d'::text]))),
    CONSTRAINT images_doctor_id_fkey FOREIGN KEY (doctor_id) REFERENCES doctors(id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT images_patient_id_fkey FOREIGN KEY (patient_id) REFERENCES patients(id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT images_pkey PRIMARY KEY (id)
);

CREATE TABLE patients (
    id bigint DEFAULT scsync_snowflake() NOT NULL,
    site_id integer DEFAULT scsync_node_site() NOT NULL,
    version_major integer DEFAULT 1 NOT NULL,
    version_minor integer DEFAULT 0 NOT NULL,
    revision bigint DEFAULT nextval('scsync_revision_seq'::regclass) NOT NULL,
    synced_revision bigint,
    synced boolean GENERATED ALWAYS AS ((NOT (revision IS DISTINCT FROM synced_revision))) STORED,
    last_synced_at timestamp with time zone,
    deleted boolean DEFAULT false NOT NULL,
    sync_enabled boolean DEFAULT true NOT NULL,
    in_conflict boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    patient_code text NOT NULL,
    name text NOT NULL,
    birth_date date,
    sex text,
    phone text,
    notes text,
    CONSTRAINT patients_pkey PRIMARY KEY (id)
);

CREATE TABLE project_files (
    id bigint DEFAULT scsync_snowflake() NOT NULL,
    site_id integer DEFAULT scsync_node_site() NOT NULL,
    version_major integer DEFAULT 1 NOT NULL,
    version_minor integer DEFAULT 0 NOT NULL,
    revision bigint DEFAULT nextval('scsync_revision_seq'::regclass) NOT NULL,
    synced_revision bigint,
    synced boolean GENERATED ALWAYS AS ((NOT (revision IS DISTINCT FROM synced_revision))) STORED,
    last_synced_at timestamp with time zone,
    deleted boolean DEFAULT false NOT NULL,
    sync_enabled boolean DEFAULT true NOT NULL,
    in_conflict boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    patient_id bigint NOT NULL,
    image_id bigint,
    name text NOT NULL,
    kind text,
    blob_sha256 text,
    blob_size bigint,
    blob_state text DEFAULT 'present'::text NOT NULL,
    file_name text,
    content_type text,
    local_path text,
    CONSTRAINT ck_project_files_blob_sha256 CHECK (((blob_sha256 IS NULL) OR (blob_sha256 ~ '^[0-9a-f]{64}$'::text))),
    CONSTRAINT ck_project_files_blob_state CHECK ((blob_state = ANY (ARRAY['present'::text, 'pending'::text, 'remote'::text]))),
    CONSTRAINT project_files_image_id_fkey FOREIGN KEY (image_id) REFERENCES images(id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT project_files_patient_id_fkey FOREIGN KEY (patient_id) REFERENCES patients(id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT project_files_pkey PRIMARY KEY (id)
);

CREATE TABLE report_templates (
    id bigint DEFAULT scsync_snowflake() NOT NULL,
    site_id integer DEFAULT scsync_node_site() NOT NULL,
    version_major integer DEFAULT 1 NOT NULL,
    version_minor integer DEFAULT 0 NOT NULL,
    revision bigint DEFAULT nextval('scsync_revision_seq'::regclass) NOT NULL,
    synced_revision bigint,
    synced boolean GENERATED ALWAYS AS ((NOT (revision IS DISTINCT FROM synced_revision))) STORED,
    last_synced_at timestamp with time zone,
    deleted boolean DEFAULT false NOT NULL,
    sync_enabled boolean DEFAULT true NOT NULL,
    in_conflict boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    name text NOT NULL,
    body text DEFAULT ''::text NOT NULL,
    CONSTRAINT report_templates_pkey PRIMARY KEY (id)
);

CREATE TABLE reports (
    id bigint DEFAULT scsync_snowflake() NOT NULL,
    site_id integer DEFAULT scsync_node_site() NOT NULL,
    version_major integer DEFAULT 1 NOT NULL,
    version_minor integer DEFAULT 0 NOT NULL,
    revision bigint DEFAULT nextval('scsync_revision_seq'::regclass) NOT NULL,
    synced_revision bigint,
    synced boolean GENERATED ALWAYS AS ((NOT (revision IS DISTINCT FROM synced_revision))) STORED,
    last_synced_at timestamp with time zone,
    deleted boolean DEFAULT false NOT NULL,
    sync_enabled boolean DEFAULT true NOT NULL,
    in_conflict boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    patient_id bigint NOT NULL,
    image_id bigint,
    doctor_id bigint,
    template_id bigint,
    title text NOT NULL,
    body text DEFAULT ''::text NOT NULL,
    CONSTRAINT reports_doctor_id_fkey FOREIGN KEY (doctor_id) REFERENCES doctors(id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT reports_image_id_fkey FOREIGN KEY (image_id) REFERENCES images(id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT reports_patient_id_fkey FOREIGN KEY (patient_id) REFERENCES patients(id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT reports_pkey PRIMARY KEY (id),
    CONSTRAINT reports_template_id_fkey FOREIGN KEY (template_id) REFERENCES report_templates(id) DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE scsync_api_events (
    id bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL,
    at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    site_id integer,
    type text NOT NULL,
    table_name text,
    row_id bigint,
    patient_id bigint,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    txid bigint DEFAULT ((pg_current_xact_id())::text)::bigint NOT NULL,
    horizon bigint DEFAULT ((pg_snapshot_xmin(pg_current_snapshot()))::text)::bigint,
    CONSTRAINT scsync_api_events_pkey PRIMARY KEY (id)
);

CREATE TABLE scsync_audit (
    seq bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL,
    at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    actor text NOT NULL,
    side text NOT NULL,
    site_id integer,
    action text NOT NULL,
    table_name text,
    row_id bigint,
    detail jsonb,
    CONSTRAINT scsync_audit_pkey PRIMARY KEY (seq)
);

CREATE TABLE scsync_backfill (
    singleton boolean DEFAULT true NOT NULL,
    state text DEFAULT 'idle'::text NOT NULL,
    rows_per_s integer,
    bytes_per_s bigint,
    rows_total bigint DEFAULT 0 NOT NULL,
    bytes_total bigint DEFAULT 0 NOT NULL,
    rows_done bigint DEFAULT 0 NOT NULL,
    bytes_done bigint DEFAULT 0 NOT NULL,
    run_started_at timestamp with time zone,
    run_rows bigint DEFAULT 0 NOT NULL,
    run_bytes bigint DEFAULT 0 NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT ck_scsync_backfill_singleton CHECK (singleton),
    CONSTRAINT ck_scsync_backfill_state CHECK ((state = ANY (ARRAY['idle'::text, 'running'::text, 'paused'::text, 'done'::text]))),
    CONSTRAINT scsync_backfill_pkey PRIMARY KEY (singleton)
);

CREATE TABLE scsync_capture_state (
    singleton boolean DEFAULT true NOT NULL,
    slot_name text,
    capture_since timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    updated_at timestamp with time zone,
    CONSTRAINT ck_scsync_capture_state_singleton CHECK (singleton),
    CONSTRAINT scsync_capture_state_pkey PRIMARY KEY (singleton)
);

CREATE TABLE scsync_conflicts (
    id bigint DEFAULT scsync_snowflake() NOT NULL,
    table_name text NOT NULL,
    row_id bigint NOT NULL,
    site_id integer NOT NULL,
    base_revision bigint,
    local_revision bigint,
    cloud_revision bigint,
    local_row jsonb,
    cloud_row jsonb,
    detected_on text NOT NULL,
    detected_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    status text DEFAULT 'open'::text NOT NULL,
    resolution text,
    resolved_by text,
    resolved_at timestamp with time zone,
    CONSTRAINT ck_scsync_conflicts_detected_on CHECK ((detected_on = ANY (ARRAY['local'::text, 'cloud'::text]))),
    CONSTRAINT ck_scsync_conflicts_resolution CHECK (((resolution IS NULL) OR (resolution = ANY (ARRAY['local'::text, 'cloud'::text])))),
    CONSTRAINT ck_scsync_conflicts_status CHECK ((status = ANY (ARRAY['open'::text, 'resolved'::text]))),
    CONSTRAINT scsync_conflicts_pkey PRIMARY KEY (id)
);

CREATE TABLE scsync_dead_letters (
    lane text NOT NULL,
    table_name text NOT NULL,
    row_id bigint NOT NULL,
    site_id integer NOT NULL,
    revision bigint,
    reason text NOT NULL,
    attempts integer DEFAULT 1 NOT NULL,
    first_failed_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    last_failed_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    next_retry_at timestamp with time zone NOT NULL,
    CONSTRAINT ck_scsync_dead_letters_lane CHECK ((lane = ANY (ARRAY['push'::text, 'pull'::text]))),
    CONSTRAINT scsync_dead_letters_pkey PRIMARY KEY (lane, table_name, row_id)
);

CREATE TABLE scsync_file_policy (
    singleton boolean DEFAULT true NOT NULL,
    mode text DEFAULT 'all'::text NOT NULL,
    tables jsonb DEFAULT '[]'::jsonb NOT NULL,
    modalities jsonb DEFAULT '[]'::jsonb NOT NULL,
    since_date date,
    last_days integer,
    old_data text DEFAULT 'keep'::text NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT ck_scsync_file_policy_days CHECK (((last_days IS NULL) OR (last_days > 0))),
    CONSTRAINT ck_scsync_file_policy_mode CHECK ((mode = ANY (ARRAY['all'::text, 'selective'::text]))),
    CONSTRAINT ck_scsync_file_policy_old CHECK ((old_data = ANY (ARRAY['keep'::text, 'delete'::text, 'backup'::text]))),
    CONSTRAINT ck_scsync_file_policy_singleton CHECK (singleton),
    CONSTRAINT scsync_file_policy_pkey PRIMARY KEY (singleton)
);

CREATE TABLE scsync_file_selection (
    table_name text NOT NULL,
    row_id bigint NOT NULL,
    selected_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT scsync_file_selection_pkey PRIMARY KEY (table_name, row_id)
);

CREATE TABLE scsync_history (
    seq bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL,
    table_name text NOT NULL,
    row_id bigint NOT NULL,
    site_id integer NOT NULL,
    revision bigint NOT NULL,
    version_major integer NOT NULL,
    version_minor integer NOT NULL,
    op text NOT NULL,
    row_data jsonb NOT NULL,
    origin text NOT NULL,
    saved_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    CONSTRAINT scsync_history_pkey PRIMARY KEY (seq),
    CONSTRAINT uq_scsync_history_revision UNIQUE (table_name, row_id, revision)
);

CREATE TABLE scsync_inbox (
    lane text NOT NULL,
    site_id integer NOT NULL,
    batch_id bigint NOT NULL,
    source_seqs jsonb NOT NULL,
    row_count integer NOT NULL,
    applied_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    CONSTRAINT ck_scsync_inbox_lane CHECK ((lane = ANY (ARRAY['push'::text, 'pull'::text]))),
    CONSTRAINT scsync_inbox_pkey PRIMARY KEY (lane, site_id, batch_id)
);

CREATE TABLE scsync_node (
    singleton boolean DEFAULT true NOT NULL,
    node_id integer NOT NULL,
    side text NOT NULL,
    site_id integer,
    configured_at timestamp with time zone DEFAULT now() NOT NULL,
    capture text DEFAULT 'triggers'::text NOT NULL,
    CONSTRAINT ck_scsync_node_capture CHECK ((capture = ANY (ARRAY['triggers'::text, 'wal'::text]))),
    CONSTRAINT ck_scsync_node_node_id CHECK (((node_id >= 0) AND (node_id <= 4095))),
    CONSTRAINT ck_scsync_node_side CHECK ((side = ANY (ARRAY['local'::text, 'cloud'::text]))),
    CONSTRAINT ck_scsync_node_singleton CHECK (singleton),
    CONSTRAINT scsync_node_pkey PRIMARY KEY (singleton)
);

CREATE TABLE scsync_offline_sessions (
    session_id uuid NOT NULL,
    table_name text NOT NULL,
    row_id bigint NOT NULL,
    site_id integer NOT NULL,
    holder text NOT NULL,
    unfenced boolean DEFAULT true NOT NULL,
    reason text NOT NULL,
    base_revision bigint NOT NULL,
    base_version_major integer NOT NULL,
    base_version_minor integer NOT NULL,
    saves integer DEFAULT 0 NOT NULL,
    last_saved_revision bigint,
    status text DEFAULT 'open'::text NOT NULL,
    opened_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    closed_at timestamp with time zone,
    CONSTRAINT ck_scsync_offline_sessions_status CHECK ((status = ANY (ARRAY['open'::text, 'closed'::text]))),
    CONSTRAINT ck_scsync_offline_sessions_unfenced CHECK (unfenced),
    CONSTRAINT scsync_offline_sessions_pkey PRIMARY KEY (session_id)
);

CREATE TABLE scsync_outbox (
    seq bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL,
    table_name text NOT NULL,
    row_id bigint NOT NULL,
    site_id integer NOT NULL,
    op text NOT NULL,
    origin text NOT NULL,
    revision bigint NOT NULL,
    synced_revision bigint,
    txid text DEFAULT (pg_current_xact_id())::text NOT NULL,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    CONSTRAINT ck_scsync_outbox_op CHECK ((op = ANY (ARRAY['I'::text, 'U'::text, 'D'::text]))),
    CONSTRAINT scsync_outbox_pkey PRIMARY KEY (seq)
);

CREATE TABLE scsync_replication_cursor (
    lane text NOT NULL,
    site_id integer NOT NULL,
    last_batch_id bigint,
    last_applied_at timestamp with time zone,
    last_source_commit_at timestamp with time zone,
    rows_applied bigint DEFAULT 0 NOT NULL,
    peer_schema_revision text,
    source_lsn pg_lsn,
    CONSTRAINT ck_scsync_cursor_lane CHECK ((lane = ANY (ARRAY['push'::text, 'pull'::text]))),
    CONSTRAINT scsync_replication_cursor_pkey PRIMARY KEY (lane, site_id)
);

CREATE TABLE scsync_synced_tables (
    table_name text NOT NULL,
    file_column text,
    registered_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT scsync_synced_tables_pkey PRIMARY KEY (table_name)
);

CREATE TABLE scsync_token_versions (
    kind text NOT NULL,
    key bigint NOT NULL,
    version integer DEFAULT 0 NOT NULL,
    disabled boolean DEFAULT false NOT NULL,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT ck_scsync_token_versions_kind CHECK ((kind = ANY (ARRAY['account'::text, 'site'::text]))),
    CONSTRAINT scsync_token_versions_pkey PRIMARY KEY (kind, key)
);

CREATE TABLE scsync_upload_parts (
    sha256 text NOT NULL,
    part_number integer NOT NULL,
    etag text NOT NULL,
    size bigint NOT NULL,
    CONSTRAINT scsync_upload_parts_pkey PRIMARY KEY (sha256, part_number),
    CONSTRAINT scsync_upload_parts_sha256_fkey FOREIGN KEY (sha256) REFERENCES scsync_uploads(sha256) ON DELETE CASCADE
);

CREATE TABLE scsync_uploads (
    sha256 text NOT NULL,
    upload_id text NOT NULL,
    size bigint NOT NULL,
    part_size bigint NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT ck_scsync_uploads_sha256 CHECK ((sha256 ~ '^[0-9a-f]{64}$'::text)),
    CONSTRAINT scsync_uploads_pkey PRIMARY KEY (sha256)
);

CREATE TABLE settings (
    id bigint DEFAULT scsync_snowflake() NOT NULL,
    site_id integer DEFAULT scsync_node_site() NOT NULL,
    version_major integer DEFAULT 1 NOT NULL,
    version_minor integer DEFAULT 0 NOT NULL,
    revision bigint DEFAULT nextval('scsync_revision_seq'::regclass) NOT NULL,
    synced_revision bigint,
    synced boolean GENERATED ALWAYS AS ((NOT (revision IS DISTINCT FROM synced_revision))) STORED,
    last_synced_at timestamp with time zone,
    deleted boolean DEFAULT false NOT NULL,
    sync_enabled boolean DEFAULT true NOT NULL,
    in_conflict boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    key text NOT NULL,
    value jsonb DEFAULT 'null'::jsonb NOT NULL,
    CONSTRAINT settings_pkey PRIMARY KEY (id),
    CONSTRAINT uq_settings_site_key UNIQUE (site_id, key)
);

CREATE TABLE user_accounts (
    id bigint DEFAULT scsync_snowflake() NOT NULL,
    site_id integer DEFAULT scsync_node_site() NOT NULL,
    version_major integer DEFAULT 1 NOT NULL,
    version_minor integer DEFAULT 0 NOT NULL,
    revision bigint DEFAULT nextval('scsync_revision_seq'::regclass) NOT NULL,
    synced_revision bigint,
    synced boolean GENERATED ALWAYS AS ((NOT (revision IS DISTINCT FROM synced_revision))) STORED,
    last_synced_at timestamp with time zone,
    deleted boolean DEFAULT false NOT NULL,
    sync_enabled boolean DEFAULT true NOT NULL,
    in_conflict boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    username text NOT NULL,
    password_hash text NOT NULL,
    role text DEFAULT 'viewer'::text NOT NULL,
    display_name text,
    doctor_id bigint,
    CONSTRAINT uq_user_accounts_site_username UNIQUE (site_id, username),
    CONSTRAINT user_accounts_doctor_id_fkey FOREIGN KEY (doctor_id) REFERENCES doctors(id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT user_accounts_pkey PRIMARY KEY (id)
);

-- ==== indexes ====

CREATE UNIQUE INDEX alembic_version_pkc ON public.alembic_version USING btree (version_num);

CREATE UNIQUE INDEX captures_pkey ON public.captures USING btree (id);

CREATE INDEX ix_captures_site_blob ON public.captures USING btree (site_id, blob_sha256);

CREATE INDEX ix_captures_site_updated ON public.captures USING btree (site_id, updated_at);

CREATE UNIQUE INDEX doctors_pkey ON public.doctors USING btree (id);

CREATE INDEX ix_doctors_site_updated ON public.doctors USING btree (site_id, updated_at);

CREATE UNIQUE INDEX images_pkey ON public.images USING btree (id);

CREATE INDEX ix_images_site_blob ON public.images USING btree (site_id, blob_sha256);

CREATE INDEX ix_images_site_updated ON public.images USING btree (site_id, updated_at);

CREATE INDEX ix_patients_site_updated ON public.patients USING btree (site_id, updated_at);

CREATE UNIQUE INDEX patients_pkey ON public.patients USING btree (id);

CREATE INDEX ix_project_files_site_blob ON public.project_files USING btree (site_id, blob_sha256);

CREATE INDEX ix_project_files_site_updated ON public.project_files USING btree (site_id, updated_at);

CREATE UNIQUE INDEX project_files_pkey ON public.project_files USING btree (id);

CREATE INDEX ix_report_templates_site_updated ON public.report_templates USING btree (site_id, updated_at);

CREATE UNIQUE INDEX report_templates_pkey ON public.report_templates USING btree (id);

CREATE INDEX ix_reports_site_updated ON public.reports USING btree (site_id, updated_at);

CREATE UNIQUE INDEX reports_pkey ON public.reports USING btree (id);

CREATE INDEX ix_scsync_api_events_at ON public.scsync_api_events USING btree (at);

CREATE INDEX ix_scsync_api_events_site_id ON public.scsync_api_events USING btree (site_id, id);

CREATE INDEX ix_scsync_api_events_txid ON public.scsync_api_events USING btree (txid);

CREATE UNIQUE INDEX scsync_api_events_pkey ON public.scsync_api_events USING btree (id);

CREATE INDEX ix_scsync_audit_record ON public.scsync_audit USING btree (table_name, row_id);

CREATE UNIQUE INDEX scsync_audit_pkey ON public.scsync_audit USING btree (seq);

CREATE UNIQUE INDEX scsync_backfill_pkey ON public.scsync_backfill USING btree (singleton);

CREATE UNIQUE INDEX scsync_capture_state_pkey ON public.scsync_capture_state USING btree (singleton);

CREATE INDEX ix_scsync_conflicts_record ON public.scsync_conflicts USING btree (table_name, row_id);

CREATE UNIQUE INDEX scsync_conflicts_pkey ON public.scsync_conflicts USING btree (id);

CREATE INDEX ix_scsync_dead_letters_site ON public.scsync_dead_letters USING btree (site_id);

CREATE UNIQUE INDEX scsync_dead_letters_pkey ON public.scsync_dead_letters USING btree (lane, table_name, row_id);

CREATE UNIQUE INDEX scsync_file_policy_pkey ON public.scsync_file_policy USING btree (singleton);

CREATE UNIQUE INDEX scsync_file_selection_pkey ON public.scsync_file_selection USING btree (table_name, row_id);

CREATE UNIQUE INDEX scsync_history_pkey ON public.scsync_history USING btree (seq);

CREATE UNIQUE INDEX uq_scsync_history_revision ON public.scsync_history USING btree (table_name, row_id, revision);

CREATE UNIQUE INDEX scsync_inbox_pkey ON public.scsync_inbox USING btree (lane, site_id, batch_id);

CREATE UNIQUE INDEX scsync_node_pkey ON public.scsync_node USING btree (singleton);

CREATE INDEX ix_scsync_offline_sessions_record ON public.scsync_offline_sessions USING btree (table_name, row_id);

CREATE UNIQUE INDEX scsync_offline_sessions_pkey ON public.scsync_offline_sessions USING btree (session_id);

CREATE INDEX ix_scsync_outbox_site_seq ON public.scsync_outbox USING btree (site_id, seq);

CREATE UNIQUE INDEX scsync_outbox_pkey ON public.scsync_outbox USING btree (seq);

CREATE UNIQUE INDEX scsync_replication_cursor_pkey ON public.scsync_replication_cursor USING btree (lane, site_id);

CREATE UNIQUE INDEX scsync_synced_tables_pkey ON public.scsync_synced_tables USING btree (table_name);

CREATE UNIQUE INDEX scsync_token_versions_pkey ON public.scsync_token_versions USING btree (kind, key);

CREATE UNIQUE INDEX scsync_upload_parts_pkey ON public.scsync_upload_parts USING btree (sha256, part_number);

CREATE UNIQUE INDEX scsync_uploads_pkey ON public.scsync_uploads USING btree (sha256);

CREATE INDEX ix_settings_site_updated ON public.settings USING btree (site_id, updated_at);

CREATE UNIQUE INDEX settings_pkey ON public.settings USING btree (id);

CREATE UNIQUE INDEX uq_settings_site_key ON public.settings USING btree (site_id, key);

CREATE INDEX ix_user_accounts_site_updated ON public.user_accounts USING btree (site_id, updated_at);

CREATE UNIQUE INDEX uq_user_accounts_site_username ON public.user_accounts USING btree (site_id, username);

CREATE UNIQUE INDEX user_accounts_pkey ON public.user_accounts USING btree (id);

-- ==== views ====

CREATE VIEW scsync_file_rows AS
 SELECT 'images'::text AS table_name,
    t.id,
    t.site_id,
    t.revision,
    t.synced_revision,
    t.sync_enabled,
    t.deleted,
    t.blob_sha256,
    t.blob_size,
    t.blob_state,
    t.local_path,
    t.file_name,
    t.content_type,
    t.modality,
    COALESCE(t.study_date, t.created_at::date) AS record_date
   FROM images t
UNION ALL
 SELECT 'captures'::text AS table_name,
    t.id,
    t.site_id,
    t.revision,
    t.synced_revision,
    t.sync_enabled,
    t.deleted,
    t.blob_sha256,
    t.blob_size,
    t.blob_state,
    t.local_path,
    t.file_name,
    t.content_type,
    i.modality,
    COALESCE(i.study_date, t.created_at::date) AS record_date
   FROM captures t
     LEFT JOIN images i ON i.id = t.image_id
UNION ALL
 SELECT 'project_files'::text AS table_name,
    t.id,
    t.site_id,
    t.revision,
    t.synced_revision,
    t.sync_enabled,
    t.deleted,
    t.blob_sha256,
    t.blob_size,
    t.blob_state,
    t.local_path,
    t.file_name,
    t.content_type,
    i.modality,
    COALESCE(i.study_date, t.created_at::date) AS record_date
   FROM project_files t
     LEFT JOIN images i ON i.id = t.image_id;

-- ==== functions ====

CREATE OR REPLACE FUNCTION public.scsync_api_events_after(p_after bigint, p_site integer, p_limit integer)
 RETURNS TABLE(id bigint, at timestamp with time zone, site_id integer, type text, table_name text, row_id bigint, patient_id bigint, payload jsonb)
 LANGUAGE plpgsql
 STABLE
AS $function$
DECLARE
    raw_after bigint := greatest(p_after, 0) >> 20;
    k_after bigint := greatest(p_after, 0) & 1048575;
    side_name text;
    e record;
    first_k bigint;
    kinds int[];
    change_type text;
BEGIN
    SELECT s.side INTO side_name FROM scsync_node s;
    FOR e IN
        WITH a AS (SELECT ev.txid, ev.horizon FROM scsync_api_events ev WHERE ev.id = raw_after)
        SELECT ev.id, ev.at, ev.site_id, ev.type, ev.table_name, ev.row_id, ev.patient_id,
               ev.payload
          FROM scsync_api_events ev
         WHERE (ev.id >= raw_after
                OR (ev.id < raw_after
                    AND ev.txid >= (SELECT a.horizon FROM a)
                    AND ev.txid <> (SELECT a.txid FROM a)))
           AND (p_site IS NULL OR ev.site_id = p_site)
         ORDER BY ev.id
         LIMIT p_limit
    LOOP
        first_k := CASE WHEN e.id = raw_after THEN k_after ELSE -1 END;
        IF e.type NOT LIKE 'batch.%' THEN
            CONTINUE WHEN first_k >= 0;
            id := e.id << 20; at := e.at; site_id := e.site_id; type := e.type;
            table_name := e.table_name; row_id := e.row_id; patient_id := e.patient_id;
            payload := e.payload;
            RETURN NEXT;
            CONTINUE;
        END IF;
        change_type := CASE WHEN (e.payload ->> 'replicated')::boolean THEN 'remote.changed'
                            ELSE 'record.changed' END;
        IF e.payload ? 'gone' THEN
            RETURN QUERY
            SELECT (e.id << 20) | (g.ord * 3 - 2), e.at, e.site_id, change_type, e.table_name,
                   (g.v ->> 'id')::bigint, (g.v ->> 'patient')::bigint,
                   jsonb_build_object('op', 'D', 'revision', g.v ->> 'revision',
                                      'deleted', true, 'origin', e.payload ->> 'origin')
              FROM jsonb_array_elements(e.payload -> 'gone') WITH ORDINALITY g(v, ord)
             WHERE g.ord * 3 - 2 > first_k
             ORDER BY g.ord;
            CONTINUE;
        END IF;
        kinds := CASE e.type WHEN 'batch.changed' THEN ARRAY[1, 2]
                             WHEN 'batch.sync' THEN ARRAY[2]
                             WHEN 'batch.conflict' THEN ARRAY[3] END;
        CONTINUE WHEN kinds IS NULL
                   OR NOT EXISTS (SELECT 1 FROM scsync_synced_tables s
                                   WHERE s.table_name = e.table_name);
        RETURN QUERY EXECUTE format($q$
            SELECT ($1 << 20) | ((x.ord - 1) * 3 + v.kind), $2, $3, v.type, $4, t.id,
                   scsync_api_patient_of($4, j.r), v.payload
              FROM jsonb_array_elements_text($5) WITH ORDINALITY x(rid, ord)
              JOIN %I t ON t.id = x.rid::bigint AND t.site_id = $3
             CROSS JOIN LATERAL (SELECT to_jsonb(t) AS r) j
             CROSS JOIN LATERAL (SELECT scsync_api_sync_state(j.r, $6) AS state) s
             CROSS JOIN LATERAL (SELECT jsonb_build_object(
                     'op', $8, 'revision', t.revision::text,
                     'version', t.version_major || '.' || t.version_minor,
                     'sync_state', s.state, 'deleted', t.deleted,
                     'sync_enabled', t.sync_enabled, 'origin', $9) AS change) c
             CROSS JOIN LATERAL (VALUES
                 (1, $7, c.change),
                 (2, 'record.sync', jsonb_build_object('state', s.state,
                                                       'revision', t.revision::text)),
                 (3, 'record.conflict', c.change)
             ) v(kind, type, payload)
             WHERE v.kind = ANY($10) AND (x.ord - 1) * 3 + v.kind > $11
               AND (v.kind <> 3 OR t.in_conflict)
             ORDER BY x.ord, v.kind$q$, e.table_name)
        USING e.id, e.at, e.site_id, e.table_name, e.payload -> 'ids', side_name, change_type,
              e.payload ->> 'op', e.payload ->> 'origin', kinds, first_k;
    END LOOP;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_api_events_newest()
 RETURNS bigint
 LANGUAGE sql
 STABLE
AS $function$
    SELECT coalesce((SELECT max(id) FROM scsync_api_events) << 20 | 1048575, 0)
$function$;

CREATE OR REPLACE FUNCTION public.scsync_api_patient_of(tbl text, r jsonb)
 RETURNS bigint
 LANGUAGE sql
 IMMUTABLE
AS $function$
    SELECT CASE WHEN tbl = 'patients' THEN (r->>'id')::bigint
                ELSE (r->>'patient_id')::bigint END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_api_publish(p_site integer, p_type text, p_table text, p_row bigint, p_patient bigint, p_payload jsonb)
 RETURNS bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'public', 'pg_temp'
AS $function$
DECLARE
    ev_id bigint;
BEGIN
    INSERT INTO scsync_api_events (site_id, type, table_name, row_id, patient_id, payload)
    VALUES (p_site, p_type, p_table, p_row, p_patient, coalesce(p_payload, '{}'::jsonb))
    RETURNING id INTO ev_id;
    RETURN ev_id;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_api_sync_state(r jsonb, side_name text)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE
AS $function$
    SELECT CASE
        WHEN (r->>'in_conflict')::boolean THEN 'conflict'
        WHEN (r->>'synced')::boolean THEN 'synced'
        WHEN NOT (r->>'sync_enabled')::boolean THEN 'off'
        WHEN r->>'blob_state' = 'pending' AND side_name = 'local' THEN 'downloading'
        WHEN r->>'blob_state' = 'pending' THEN 'uploading'
        WHEN side_name = 'local' THEN 'uploading'
        ELSE 'downloading'
    END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_blob_in_scope(tbl text, rid bigint, modality text, record_date date)
 RETURNS boolean
 LANGUAGE sql
 STABLE
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION public.scsync_bookkeeping_columns()
 RETURNS text[]
 LANGUAGE sql
 IMMUTABLE
AS $function$
    SELECT ARRAY['revision', 'synced_revision', 'synced', 'last_synced_at', 'updated_at',
                 'blob_state', 'local_path', 'lifecycle', 'in_conflict']
$function$;

CREATE OR REPLACE FUNCTION public.scsync_capture_attach(tbl regclass)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
DECLARE
    kind text := CASE WHEN EXISTS (
        SELECT 1 FROM scsync_synced_tables s, pg_class c
         WHERE c.oid = tbl AND s.table_name = c.relname AND s.file_column IS NOT NULL)
        THEN 'file' ELSE 'plain' END;
    old_trigger text;
BEGIN
    FOREACH old_trigger IN ARRAY ARRAY['scsync_stamp', 'scsync_capture', 'scsync_capture_upd',
                                       'scsync_capture_ins', 'scsync_capture_del',
                                       'api_event_capture'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', old_trigger, tbl);
    END LOOP;
    EXECUTE format('ALTER TABLE %s ALTER COLUMN revision SET DEFAULT '
                   'nextval(''scsync_revision_seq'')', tbl);
    IF (SELECT side FROM scsync_node) IS DISTINCT FROM 'cloud' THEN
        EXECUTE format('ALTER TABLE %s ALTER COLUMN site_id SET DEFAULT scsync_node_site()', tbl);
    END IF;
    EXECUTE format('CREATE TRIGGER scsync_stamp BEFORE UPDATE ON %s FOR EACH ROW '
                   'WHEN (NOT scsync_is_replicating()) '
                   'EXECUTE FUNCTION scsync_stamp_update()', tbl);
    EXECUTE format('CREATE TRIGGER scsync_capture_ins AFTER INSERT ON %s '
                   'REFERENCING NEW TABLE AS scsync_new FOR EACH STATEMENT '
                   'EXECUTE FUNCTION scsync_capture_rows(%L)', tbl, kind);
    EXECUTE format('CREATE TRIGGER scsync_capture_upd AFTER UPDATE ON %s '
                   'REFERENCING OLD TABLE AS scsync_old NEW TABLE AS scsync_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows(%L)', tbl, kind);
    EXECUTE format('CREATE TRIGGER scsync_capture_del AFTER DELETE ON %s '
                   'REFERENCING OLD TABLE AS scsync_old FOR EACH STATEMENT '
                   'EXECUTE FUNCTION scsync_capture_rows(%L)', tbl, kind);
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_capture_publish(tbl regclass)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
                    WHERE p.pubname = 'scsync_capture' AND r.prrelid = tbl) THEN
        EXECUTE format('ALTER PUBLICATION scsync_capture ADD TABLE %s', tbl);
    END IF;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_capture_read(p_lane text, p_site_id integer, p_changes jsonb, p_exclude jsonb, p_busy jsonb, p_xids bigint[])
 RETURNS TABLE(ord bigint, seqs bigint[], table_name text, row_id bigint, op text, revision bigint, base bigint, row_data text, source_commit_at timestamp with time zone, resolution jsonb)
 LANGUAGE plpgsql
AS $function$
DECLARE
    tname text;
BEGIN
    PERFORM scsync_replicator_guard(p_site_id);
    PERFORM scsync_capture_wait_visible(p_xids, 10);
    IF NOT scsync_scratch_ok('scsync_read_keys', 'scsync_read_key') THEN
        DROP TABLE IF EXISTS pg_temp.scsync_read_keys;
        CREATE TEMP TABLE pg_temp.scsync_read_keys OF scsync_read_key ON COMMIT DELETE ROWS;
    END IF;
    DELETE FROM pg_temp.scsync_read_keys;
    FOR tname IN SELECT DISTINCT x ->> 't' FROM jsonb_array_elements(p_changes) x LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM scsync_synced_tables s
                                   WHERE s.table_name = tname);
        EXECUTE format($q$
            WITH c AS MATERIALIZED (
                SELECT x.n, x.v ->> 'op' AS op, (x.v ->> 'id')::bigint AS id,
                       (x.v ->> 'at')::timestamptz AS at,
                       CASE WHEN x.v ->> 'op' <> 'D'
                            THEN jsonb_populate_record(cur, x.v -> 'row') END AS r
                  FROM jsonb_array_elements($1) WITH ORDINALITY x(v, n)
                  LEFT JOIN %1$I cur ON cur.id = (x.v ->> 'id')::bigint
                 WHERE x.v ->> 't' = $2
            ), h AS (
                INSERT INTO scsync_history (table_name, row_id, site_id, revision,
                                            version_major, version_minor, op, row_data,
                                            origin)
                SELECT $2, (c.r).id, (c.r).site_id, (c.r).revision, (c.r).version_major,
                       (c.r).version_minor, c.op, to_jsonb(c.r), 'direct'
                  FROM c
                 WHERE c.op <> 'D'
                   AND NOT EXISTS (SELECT 1 FROM scsync_history hh
                                    WHERE hh.table_name = $2 AND hh.row_id = c.id
                                      AND hh.revision = (c.r).revision)
                 ORDER BY c.n
                ON CONFLICT (table_name, row_id, revision) DO NOTHING
            )
            INSERT INTO pg_temp.scsync_read_keys (ord, seqs, table_name, row_id, last_op,
                                                  last_revision, last_base,
                                                  source_commit_at)
            SELECT min(c.n), '{}', $2, c.id, (array_agg(c.op ORDER BY c.n DESC))[1],
                   (array_agg((c.r).revision ORDER BY c.n DESC))[1],
                   (array_agg((c.r).synced_revision ORDER BY c.n DESC))[1], max(c.at)
              FROM c
             WHERE c.op = 'D' OR (c.r).revision IS DISTINCT FROM (c.r).synced_revision
             GROUP BY c.id$q$,
            tname)
        USING p_changes, tname;
    END LOOP;
    -- The record's current revision, which is what crosses, into the history too (when
    -- a later change, decoded in a later batch, made it): an acknowledgement, after a
    -- crash above all, matches the revisions the cloud holds against this history, and
    -- would not find one sent ahead of its own change.
    FOR tname IN SELECT DISTINCT k.table_name FROM pg_temp.scsync_read_keys k LOOP
        EXECUTE format($q$
            INSERT INTO scsync_history (table_name, row_id, site_id, revision, version_major,
                                        version_minor, op, row_data, origin)
            SELECT $1, t.id, t.site_id, t.revision, t.version_major, t.version_minor, 'U',
                   to_jsonb(t), 'direct'
              FROM pg_temp.scsync_read_keys k JOIN %1$I t ON t.id = k.row_id
             WHERE k.table_name = $1
               AND NOT EXISTS (SELECT 1 FROM scsync_history hh
                                WHERE hh.table_name = $1 AND hh.row_id = t.id
                                  AND hh.revision = t.revision)
             ORDER BY k.ord
            ON CONFLICT (table_name, row_id, revision) DO NOTHING$q$, tname)
        USING tname;
    END LOOP;
    -- Tombstones: the last revision history holds (the history rows of this batch's
    -- own changes are written above, so they count).
    UPDATE pg_temp.scsync_read_keys k
       SET last_revision = coalesce(h.revision, 0), last_base = coalesce(h.revision, 0)
      FROM (SELECT k2.table_name, k2.row_id,
                   (SELECT hh.revision FROM scsync_history hh
                     WHERE hh.table_name = k2.table_name AND hh.row_id = k2.row_id
                     ORDER BY hh.seq DESC LIMIT 1) AS revision
              FROM pg_temp.scsync_read_keys k2 WHERE k2.last_op = 'D') h
     WHERE k.last_op = 'D' AND h.table_name = k.table_name AND h.row_id = k.row_id;
    -- Parked and not yet due, or in the batch in flight: to the outbox, for later.
    WITH parked AS (
        DELETE FROM pg_temp.scsync_read_keys k
         WHERE EXISTS (SELECT 1 FROM scsync_dead_letters d
                        WHERE d.lane = p_lane AND d.table_name = k.table_name
                          AND d.row_id = k.row_id AND d.next_retry_at > clock_timestamp())
            OR (k.table_name, k.row_id) IN (SELECT b ->> 't', (b ->> 'id')::bigint
                                              FROM jsonb_array_elements(p_busy) b)
        RETURNING k.*
    )
    INSERT INTO scsync_outbox (table_name, row_id, site_id, op, origin, revision,
                               synced_revision)
    SELECT p.table_name, p.row_id, p_site_id, CASE p.last_op WHEN 'D' THEN 'D' ELSE 'U' END,
           'local', p.last_revision, p.last_base
      FROM parked p;
    PERFORM scsync_read_keys_switch();
    DELETE FROM pg_temp.scsync_read_keys k WHERE k.held;
    RETURN QUERY SELECT * FROM scsync_read_keys_rows(p_exclude);
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_capture_requeue(p_site_id integer, p_keys jsonb)
 RETURNS void
 LANGUAGE sql
AS $function$
    INSERT INTO scsync_outbox (table_name, row_id, site_id, op, origin, revision,
                               synced_revision)
    SELECT k ->> 't', (k ->> 'id')::bigint, p_site_id, 'U', 'local',
           (k ->> 'revision')::bigint, (k ->> 'revision')::bigint
      FROM jsonb_array_elements(p_keys) k
$function$;

CREATE OR REPLACE FUNCTION public.scsync_capture_resync(p_slot text, p_lsn text)
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE
    tname text;
    since timestamptz;
    n int := 0;
    k int;
BEGIN
    SELECT capture_since INTO since FROM scsync_capture_state;
    FOR tname IN SELECT s.table_name FROM scsync_synced_tables s
                  ORDER BY s.registered_at, s.table_name LOOP
        EXECUTE format($q$
            WITH h AS (
                INSERT INTO scsync_history (table_name, row_id, site_id, revision,
                                            version_major, version_minor, op, row_data,
                                            origin)
                SELECT $1, t.id, t.site_id, t.revision, t.version_major, t.version_minor,
                       'U', to_jsonb(t), 'direct'
                  FROM %1$I t WHERE NOT t.synced AND t.updated_at >= $2
                ON CONFLICT (table_name, row_id, revision) DO NOTHING
            )
            INSERT INTO scsync_outbox (table_name, row_id, site_id, op, origin, revision,
                                       synced_revision)
            SELECT $1, t.id, t.site_id, 'U', 'local', t.revision, t.synced_revision
              FROM %1$I t WHERE NOT t.synced AND t.updated_at >= $2
               AND NOT EXISTS (SELECT 1 FROM scsync_outbox o
                                WHERE o.table_name = $1 AND o.row_id = t.id
                                  AND o.revision = t.revision)$q$, tname)
        USING tname, since;
        GET DIAGNOSTICS k = ROW_COUNT;
        n := n + k;
    END LOOP;
    UPDATE scsync_capture_state SET slot_name = p_slot, updated_at = clock_timestamp();
    RETURN n;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_capture_rows()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
DECLARE
    repl boolean := scsync_is_replicating();
    side_name text;
    from_wal boolean;
    made_on text;
    origin_tag text;
    has_file boolean := TG_NARGS > 0 AND TG_ARGV[0] = 'file';
BEGIN
    SELECT nd.side, coalesce(to_jsonb(nd) ->> 'capture' = 'wal', false)
      INTO side_name, from_wal FROM scsync_node nd;
    from_wal := coalesce(from_wal, false) AND NOT repl;
    made_on := CASE WHEN NOT repl THEN side_name
                    WHEN side_name = 'local' THEN 'cloud' ELSE 'local' END;
    origin_tag := CASE WHEN repl THEN 'replicated' ELSE 'direct' END;
    IF TG_OP = 'INSERT' THEN
        IF NOT from_wal THEN
            INSERT INTO scsync_history (table_name, row_id, site_id, revision,
                                        version_major, version_minor, op, row_data, origin)
            SELECT TG_TABLE_NAME, n.id, n.site_id, n.revision, n.version_major,
                   n.version_minor, 'I', to_jsonb(n), origin_tag
              FROM scsync_new n
            ON CONFLICT (table_name, row_id, revision) DO NOTHING;
        END IF;
        IF NOT repl AND NOT from_wal THEN
            INSERT INTO scsync_outbox (table_name, row_id, site_id, op, origin, revision,
                                       synced_revision)
            SELECT TG_TABLE_NAME, n.id, n.site_id, 'I', coalesce(side_name, 'unknown'),
                   n.revision, n.synced_revision
              FROM scsync_new n;
        END IF;
        INSERT INTO scsync_api_events (site_id, type, table_name, payload)
        SELECT c.site_id, c.kind, TG_TABLE_NAME,
               jsonb_build_object('op', 'I', 'origin', made_on, 'replicated', repl,
                                  'ids', jsonb_agg(c.id::text ORDER BY c.n))
          FROM (SELECT n.site_id, n.id, k.kind, row_number() OVER () AS n
                  FROM scsync_new n
                  CROSS JOIN LATERAL (VALUES ('batch.changed'),
                                             (CASE WHEN n.in_conflict
                                                   THEN 'batch.conflict' END)) k(kind)
                 WHERE k.kind IS NOT NULL) c
         GROUP BY c.site_id, c.kind, (c.n - 1) / 10000
         ORDER BY min(c.n);
    ELSIF TG_OP = 'UPDATE' THEN
        -- One text for every table; on a table with a file its blob_state moves the
        -- badge too (a column only such tables have, so the text is put together here:
        -- a to_jsonb of both row versions instead cost an apply a quarter of its rows/s).
        EXECUTE format($q$
        WITH c AS (
            SELECT n AS r, n.id, n.site_id, n.revision, n.synced_revision, n.version_major,
                   n.version_minor, n.in_conflict AND NOT o.in_conflict AS conflicted,
                   n.revision IS DISTINCT FROM o.revision AS changed,
                   (n.synced, n.in_conflict, n.sync_enabled, n.deleted)
                       IS DISTINCT FROM (o.synced, o.in_conflict, o.sync_enabled, o.deleted)
                   %s AS moved
              FROM scsync_new n JOIN scsync_old o ON o.id = n.id
        ), h AS (
            INSERT INTO scsync_history (table_name, row_id, site_id, revision, version_major,
                                        version_minor, op, row_data, origin)
            SELECT $1, c.id, c.site_id, c.revision, c.version_major,
                   c.version_minor, 'U', to_jsonb(c.r), $4
              FROM c WHERE c.changed AND NOT $6
            ON CONFLICT (table_name, row_id, revision) DO NOTHING
        ), ob AS (
            INSERT INTO scsync_outbox (table_name, row_id, site_id, op, origin, revision,
                                       synced_revision)
            SELECT $1, c.id, c.site_id, 'U', coalesce($5, 'unknown'),
                   c.revision, c.synced_revision
              FROM c WHERE c.changed AND NOT $2 AND NOT $6
        )
        INSERT INTO scsync_api_events (site_id, type, table_name, payload)
        SELECT e.site_id, e.kind, $1,
               jsonb_build_object('op', 'U', 'origin', $3, 'replicated', $2,
                                  'ids', jsonb_agg(e.id::text ORDER BY e.n))
          FROM (SELECT c.site_id, c.id, k.kind, row_number() OVER () AS n
                  FROM c CROSS JOIN LATERAL (
                      VALUES (CASE WHEN c.changed THEN 'batch.changed'
                                   WHEN c.moved THEN 'batch.sync' END),
                             (CASE WHEN c.conflicted THEN 'batch.conflict' END)) k(kind)
                 WHERE k.kind IS NOT NULL) e
         GROUP BY e.site_id, e.kind, (e.n - 1) / 10000
         ORDER BY min(e.n)$q$,
            CASE WHEN has_file THEN 'OR n.blob_state IS DISTINCT FROM o.blob_state' ELSE '' END)
        USING TG_TABLE_NAME, repl, made_on, origin_tag, side_name, from_wal;
    ELSE  -- DELETE: the records are gone, so their event carries what a client is told.
        IF NOT repl AND NOT from_wal THEN
            INSERT INTO scsync_outbox (table_name, row_id, site_id, op, origin, revision,
                                       synced_revision)
            SELECT TG_TABLE_NAME, o.id, o.site_id, 'D', coalesce(side_name, 'unknown'),
                   o.revision, o.synced_revision
              FROM scsync_old o;
        END IF;
        INSERT INTO scsync_api_events (site_id, type, table_name, payload)
        SELECT g.site_id, 'batch.changed', TG_TABLE_NAME,
               jsonb_build_object('op', 'D', 'origin', made_on, 'replicated', repl,
                                  'gone', jsonb_agg(jsonb_build_object(
                                      'id', g.id::text, 'revision', g.revision::text,
                                      'patient', g.patient::text) ORDER BY g.n))
          FROM (SELECT o.site_id, o.id, o.revision,
                       scsync_api_patient_of(TG_TABLE_NAME, to_jsonb(o)) AS patient,
                       row_number() OVER () AS n
                  FROM scsync_old o) g
         GROUP BY g.site_id, (g.n - 1) / 10000
         ORDER BY min(g.n);
    END IF;
    RETURN NULL;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_capture_wait_visible(p_xids bigint[], p_wait_s double precision)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => p_wait_s);
    late bigint;
BEGIN
    LOOP
        -- The 64-bit id of a 32-bit one: the epoch of the snapshot's xmax, or the one
        -- before for an id above xmax's low half (it wrapped around since).
        SELECT x INTO late
          FROM unnest(p_xids) x,
               LATERAL (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax) s
         WHERE NOT pg_visible_in_snapshot(
                   ((((s.xmax >> 32) - (x > (s.xmax & 4294967295))::int) << 32) | x)
                       ::text::xid8,
                   pg_current_snapshot())
         LIMIT 1;
        EXIT WHEN NOT FOUND;
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'transaction % is committed in the WAL but not visible after % s',
                late, p_wait_s USING ERRCODE = '55000';
        END IF;
        PERFORM pg_sleep(0.001);
    END LOOP;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_clock_ms()
 RETURNS bigint
 LANGUAGE sql
AS $function$
    SELECT (floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint
         - 1577836800000  -- 2020-01-01T00:00:00Z in ms since the Unix epoch
         + coalesce(nullif(current_setting('scsync.clock_offset_ms', true), ''), '0')::bigint
$function$;

CREATE OR REPLACE FUNCTION public.scsync_history_save(tbl regclass, p_row_id bigint, p_op text)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
DECLARE
    tname text := (SELECT c.relname FROM pg_class c WHERE c.oid = tbl);
BEGIN
    EXECUTE format(
        'INSERT INTO scsync_history (table_name, row_id, site_id, revision, version_major,
                                     version_minor, op, row_data, origin)
         SELECT $1, t.id, t.site_id, t.revision, t.version_major, t.version_minor, $3,
                to_jsonb(t), ''direct''
           FROM %s t WHERE t.id = $2
         ON CONFLICT (table_name, row_id, revision) DO NOTHING', tbl)
    USING tname, p_row_id, p_op;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_is_replicating()
 RETURNS boolean
 LANGUAGE sql
 STABLE
AS $function$
    SELECT coalesce(current_setting('scsync.replicating', true), '') = 'on'
$function$;

CREATE OR REPLACE FUNCTION public.scsync_lockd_apply(tbl regclass, p_row_id bigint, p_changes jsonb, p_bump text, p_protected text[], OUT changed boolean, OUT new_major integer, OUT new_minor integer, OUT new_revision bigint)
 RETURNS record
 LANGUAGE plpgsql
AS $function$
DECLARE
    old_row jsonb;
    new_row jsonb;
    cols text;
    bad text;
    fk_col text;
    ref_tbl regclass;
    ref_site integer;
BEGIN
    IF p_bump NOT IN ('major', 'minor') THEN
        RAISE EXCEPTION 'bump must be major or minor, not %', p_bump USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(p_changes) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'changes must be a JSON object' USING ERRCODE = '22023';
    END IF;
    -- Accounts change only through the API's account endpoints (an admin of the site),
    -- whatever the caller sent as p_protected.
    IF tbl = to_regclass('user_accounts') THEN
        RAISE EXCEPTION '% records are changed through the account endpoints, not by edits',
            tbl USING ERRCODE = 'SCL13';
    END IF;
    SELECT k INTO bad FROM jsonb_object_keys(p_changes) AS k
     WHERE k = ANY (p_protected) OR k IN ('password_hash', 'role')
        OR NOT EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = tbl AND a.attname = k AND a.attnum > 0
                          AND NOT a.attisdropped)
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'column % of % cannot be edited', bad, tbl
            USING ERRCODE = 'SCL22', COLUMN = bad;
    END IF;
    EXECUTE format('SELECT to_jsonb(t), to_jsonb(jsonb_populate_record(t, $2)) '
                   'FROM %s AS t WHERE id = $1 FOR UPDATE', tbl)
       INTO old_row, new_row USING p_row_id, p_changes;
    IF old_row IS NULL THEN
        RAISE EXCEPTION 'record %/% does not exist', tbl, p_row_id USING ERRCODE = 'SCL04';
    END IF;
    -- Ids are global, so a foreign key alone would let a record point at another
    -- clinic's record. A reference must name a record of the edited record's own site;
    -- another site's id gets the same answer as an id that does not exist (SCL23), so
    -- no clinic can probe another's ids.
    FOR fk_col, ref_tbl IN
        SELECT a.attname::text, c.confrelid::regclass
          FROM pg_constraint c
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
         WHERE c.conrelid = tbl AND c.contype = 'f' AND cardinality(c.conkey) = 1
           AND p_changes ? a.attname::text
    LOOP
        CONTINUE WHEN new_row->>fk_col IS NULL;
        ref_site := NULL;
        EXECUTE format('SELECT site_id FROM %s WHERE id = $1', ref_tbl)
           INTO ref_site USING (new_row->>fk_col)::bigint;
        IF ref_site IS DISTINCT FROM (old_row->>'site_id')::integer THEN
            RAISE EXCEPTION '% references no % record of this site', fk_col, ref_tbl
                USING ERRCODE = 'SCL23', COLUMN = fk_col;
        END IF;
    END LOOP;
    IF new_row = old_row THEN
        changed := false;
        new_major := (old_row->>'version_major')::integer;
        new_minor := (old_row->>'version_minor')::integer;
        new_revision := (old_row->>'revision')::bigint;
        RETURN;
    END IF;
    SELECT string_agg(format('%I', k), ', ') INTO cols FROM jsonb_object_keys(p_changes) AS k;
    EXECUTE format(
        'UPDATE %1$s AS t SET (%2$s) = (SELECT %2$s FROM jsonb_populate_record(t, $2)), '
        'version_major = CASE WHEN $3 = ''major'' THEN t.version_major + 1 '
        '                     ELSE t.version_major END, '
        'version_minor = CASE WHEN $3 = ''major'' THEN 0 ELSE t.version_minor + 1 END '
        'WHERE id = $1 RETURNING version_major, version_minor, revision', tbl, cols)
       INTO new_major, new_minor, new_revision USING p_row_id, p_changes, p_bump;
    changed := true;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_node_sequences()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
DECLARE
    last_rev bigint;
    first_rev bigint;
BEGIN
    SELECT last_value INTO last_rev FROM scsync_revision_seq;
    first_rev := (((greatest(last_rev, 0) >> 12) + 1) << 12) | NEW.node_id;
    EXECUTE format('ALTER SEQUENCE scsync_revision_seq INCREMENT BY 4096 MINVALUE 0 '
                   'MAXVALUE 9223372036854775807 START WITH %s RESTART WITH %s',
                   first_rev, first_rev);
    RETURN NULL;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_node_site()
 RETURNS integer
 LANGUAGE sql
 STABLE
AS $function$
    SELECT n.site_id FROM scsync_node n WHERE n.side = 'local'
$function$;

CREATE OR REPLACE FUNCTION public.scsync_read_keys_rows(p_exclude jsonb)
 RETURNS TABLE(ord bigint, seqs bigint[], table_name text, row_id bigint, op text, revision bigint, base bigint, row_data text, source_commit_at timestamp with time zone, resolution jsonb)
 LANGUAGE plpgsql
AS $function$
DECLARE
    tname text;
    excl text[];
BEGIN
    FOR tname IN SELECT DISTINCT k.table_name FROM pg_temp.scsync_read_keys k LOOP
        excl := ARRAY(SELECT jsonb_array_elements_text(coalesce(p_exclude -> tname, '[]')));
        RETURN QUERY EXECUTE format(
            'SELECT k.ord, k.seqs, k.table_name, k.row_id,
                    CASE WHEN k.off OR t.id IS NOT NULL THEN ''U'' ELSE ''D'' END,
                    CASE WHEN k.off THEN h.revision
                         ELSE coalesce(t.revision, k.last_revision) END,
                    CASE WHEN k.off THEN k.synced_rev
                         WHEN t.id IS NULL THEN k.last_base ELSE t.synced_revision END,
                    CASE WHEN k.off THEN (h.row_data - $2)::text
                         WHEN t.id IS NULL THEN NULL
                         ELSE (to_jsonb(t) - $2)::text
                    END,
                    k.source_commit_at,
                    CASE WHEN t.id IS NOT NULL AND NOT k.off AND NOT t.in_conflict THEN (
                        SELECT jsonb_build_object(''id'', c.id, ''resolution'', c.resolution,
                                                  ''resolved_by'', c.resolved_by)
                          FROM scsync_conflicts c
                         WHERE c.table_name = k.table_name AND c.row_id = k.row_id
                           AND c.status = ''resolved''
                         ORDER BY c.resolved_at DESC LIMIT 1)
                    END
               FROM pg_temp.scsync_read_keys k LEFT JOIN %I t ON t.id = k.row_id
               LEFT JOIN scsync_history h ON k.off AND h.seq = k.off_seq
              WHERE k.table_name = $1', tname)
        USING tname, excl;
    END LOOP;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_read_keys_switch()
 RETURNS void
 LANGUAGE plpgsql
AS $function$
DECLARE
    tname text;
BEGIN
    -- The switch: off now? (a gone record: as its last revision had it)
    FOR tname IN SELECT DISTINCT k.table_name FROM pg_temp.scsync_read_keys k LOOP
        EXECUTE format('UPDATE pg_temp.scsync_read_keys k
                           SET present = true, off = NOT t.sync_enabled,
                               synced_rev = t.synced_revision
                          FROM %I t WHERE k.table_name = $1 AND t.id = k.row_id', tname)
        USING tname;
    END LOOP;
    UPDATE pg_temp.scsync_read_keys k
       SET present = false, synced_rev = k.last_base,
           off = NOT coalesce((SELECT (h.row_data ->> 'sync_enabled')::boolean
                                 FROM scsync_history h
                                WHERE h.table_name = k.table_name AND h.row_id = k.row_id
                                ORDER BY h.seq DESC LIMIT 1), true)
     WHERE k.present IS NULL;
    -- Where sync went off last: the first revision after the last one with sync on.
    UPDATE pg_temp.scsync_read_keys k
       SET off_seq = (SELECT min(h.seq) FROM scsync_history h
                       WHERE h.table_name = k.table_name AND h.row_id = k.row_id
                         AND h.seq > coalesce((
                             SELECT max(h2.seq) FROM scsync_history h2
                              WHERE h2.table_name = k.table_name
                                AND h2.row_id = k.row_id
                                AND (h2.row_data ->> 'sync_enabled')::boolean), -1))
     WHERE k.off;
    -- Held back: the record never crossed, or the destination already holds a
    -- revision saved with sync off (or there is no saved revision to tell it by).
    UPDATE pg_temp.scsync_read_keys k
       SET held = k.synced_rev IS NULL OR k.off_seq IS NULL
                  OR k.off_seq <= coalesce((SELECT h.seq FROM scsync_history h
                                             WHERE h.table_name = k.table_name
                                               AND h.row_id = k.row_id
                                               AND h.revision = k.synced_rev), -1)
     WHERE k.off;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_register_table(tbl regclass, file_column text DEFAULT NULL::text)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
    INSERT INTO scsync_synced_tables (table_name, file_column)
    SELECT c.relname, file_column FROM pg_class c WHERE c.oid = tbl;
    PERFORM scsync_capture_attach(tbl);
    IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'scsync_capture') THEN
        PERFORM scsync_capture_publish(tbl);
    END IF;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_replicator_ack(p_lane text, p_seqs bigint[], p_rows jsonb)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
DECLARE
    tname text;
    x scsync_conflicts%ROWTYPE;
    mine bigint;
    g int := scsync_replicator_guard(NULL);
    bad record;
BEGIN
    -- Bookkeeping only, never a change to send back (local to this transaction).
    PERFORM set_config('scsync.replicating', 'on', true);
    IF g IS NOT NULL THEN
        -- A site acknowledges its own outbox rows, its own records, its own conflicts:
        -- anything else refuses the whole acknowledgement.
        SELECT o.seq, o.table_name, o.row_id, o.site_id INTO bad FROM scsync_outbox o
         WHERE o.seq = ANY(p_seqs) AND o.site_id <> g ORDER BY o.seq LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'site % may not acknowledge outbox seq % (% %): it belongs to site %',
                g, bad.seq, bad.table_name, bad.row_id, bad.site_id USING ERRCODE = '42501';
        END IF;
        PERFORM scsync_replicator_check_keys(p_rows, g);
        SELECT r ->> 't' AS t, r ->> 'id' AS id, r -> 'conflict' ->> 'id' AS cid,
               r -> 'conflict' ->> 'site_id' AS site INTO bad
          FROM jsonb_array_elements(p_rows) r
         WHERE jsonb_typeof(r -> 'conflict') = 'object'
           AND ((r -> 'conflict' ->> 'site_id') IS DISTINCT FROM g::text
                OR (r -> 'conflict' ->> 'table_name') IS DISTINCT FROM r ->> 't'
                OR (r -> 'conflict' ->> 'row_id') IS DISTINCT FROM r ->> 'id'
                OR EXISTS (SELECT 1 FROM scsync_conflicts c
                            WHERE c.id = (r -> 'conflict' ->> 'id')::bigint
                              AND (c.site_id <> g OR c.table_name <> r ->> 't'
                                   OR c.row_id <> (r ->> 'id')::bigint)))
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'site % may not record conflict % of % %: not its own (site %)',
                g, bad.cid, bad.t, bad.id, coalesce(bad.site, 'none') USING ERRCODE = '42501';
        END IF;
    END IF;
    DELETE FROM scsync_outbox WHERE seq = ANY(p_seqs) AND (g IS NULL OR site_id = g);
    DELETE FROM scsync_dead_letters d
     USING jsonb_array_elements(p_rows) r
     WHERE d.lane = p_lane AND d.table_name = r ->> 't' AND d.row_id = (r ->> 'id')::bigint
       AND (g IS NULL OR d.site_id = g);
    FOR tname IN SELECT DISTINCT r ->> 't' FROM jsonb_array_elements(p_rows) r
                  ORDER BY 1 LOOP
        -- Records with a conflict to mirror are locked first, as the apply locks what it
        -- applies: the other lane's apply on this side, meeting the same clash at the
        -- same moment, then either committed its conflict before (and it is seen below)
        -- or waits and finds this one open (and takes its id).
        IF jsonb_path_exists(p_rows, '$[*] ? (@.conflict.type() == "object")') THEN
            EXECUTE format(
                'SELECT 1 FROM %1$I t
                  WHERE t.id IN (SELECT (r ->> ''id'')::bigint FROM jsonb_array_elements($2) r
                                  WHERE r ->> ''t'' = $1
                                    AND jsonb_typeof(r -> ''conflict'') = ''object'')
                  ORDER BY t.id FOR UPDATE OF t',
                tname)
            USING tname, p_rows;
        END IF;
        -- Common case first: the record still is one of the revisions the destination
        -- holds; then no history needs consulting.
        EXECUTE format(
            'UPDATE %1$I t SET synced_revision = t.revision, last_synced_at = clock_timestamp()
               FROM jsonb_array_elements($2) r
              WHERE r ->> ''t'' = $1 AND (r ->> ''id'')::bigint = t.id
                AND ($3 IS NULL OR t.site_id = $3)
                AND t.synced_revision IS DISTINCT FROM t.revision
                AND r -> ''revs'' @> to_jsonb(t.revision)',
            tname)
        USING tname, p_rows, g;
        EXECUTE format(
            'UPDATE %1$I t SET synced_revision = b.rev, last_synced_at = clock_timestamp()
               FROM (SELECT DISTINCT ON (x.id) x.id, h.revision AS rev, h.seq
                       FROM (SELECT (r ->> ''id'')::bigint AS id, r -> ''revs'' AS revs
                               FROM jsonb_array_elements($2) r
                              WHERE r ->> ''t'' = $1
                                AND jsonb_array_length(r -> ''revs'') > 0) x
                       JOIN %1$I cur ON cur.id = x.id AND NOT x.revs @> to_jsonb(cur.revision)
                       JOIN scsync_history h
                         ON h.table_name = $1 AND h.row_id = x.id
                        AND h.revision IN (SELECT jsonb_array_elements_text(x.revs)::bigint)
                      ORDER BY x.id, h.seq DESC) b
              WHERE t.id = b.id AND ($3 IS NULL OR t.site_id = $3)
                AND t.synced_revision IS DISTINCT FROM t.revision
                AND t.synced_revision IS DISTINCT FROM b.rev
                AND coalesce((SELECT h2.seq FROM scsync_history h2
                               WHERE h2.table_name = $1 AND h2.row_id = t.id
                                 AND h2.revision = t.synced_revision), -1) < b.seq',
            tname)
        USING tname, p_rows, g;
        EXECUTE format(
            'UPDATE %1$I t SET in_conflict = true
               FROM jsonb_array_elements($2) r
              WHERE r ->> ''t'' = $1 AND (r ->> ''id'')::bigint = t.id
                AND ($3 IS NULL OR t.site_id = $3)
                AND jsonb_typeof(r -> ''conflict'') = ''object'' AND NOT t.in_conflict',
            tname)
        USING tname, p_rows, g;
    END LOOP;
    -- One clash, one conflict. Both lanes can meet the same clash at once (push applying
    -- at the cloud, pull applying here), each recording the conflict under an id of its
    -- own on its destination, and each ack brings that id to the other side. Both sides
    -- then keep the lower of the open ids of the record, refreshed with the versions
    -- that came, so the clash ends up under one id, the same on both sides.
    FOR x IN SELECT y.* FROM jsonb_array_elements(p_rows) r,
                         jsonb_populate_record(NULL::scsync_conflicts, r -> 'conflict') y
              WHERE jsonb_typeof(r -> 'conflict') = 'object' ORDER BY y.id LOOP
        SELECT min(c.id) INTO mine FROM scsync_conflicts c
         WHERE c.table_name = x.table_name AND c.row_id = x.row_id AND c.status = 'open'
           AND c.id <> x.id AND (g IS NULL OR c.site_id = g);
        IF mine IS NOT NULL AND mine < x.id THEN
            x.id := mine;  -- refreshed below; who detected it stays as it was
        END IF;
        DELETE FROM scsync_conflicts c
         WHERE c.table_name = x.table_name AND c.row_id = x.row_id AND c.status = 'open'
           AND c.id <> x.id AND (g IS NULL OR c.site_id = g);
        INSERT INTO scsync_conflicts AS c
        SELECT (x).*
        ON CONFLICT (id) DO UPDATE
           SET base_revision = EXCLUDED.base_revision,
               -- a side whose record is gone reports no revision: keep what is known
               local_revision = coalesce(EXCLUDED.local_revision, c.local_revision),
               cloud_revision = coalesce(EXCLUDED.cloud_revision, c.cloud_revision),
               local_row = EXCLUDED.local_row, cloud_row = EXCLUDED.cloud_row,
               detected_at = EXCLUDED.detected_at
         WHERE c.status = 'open';
    END LOOP;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_replicator_apply(p_side text, p_columns jsonb, p_batch jsonb, p_only_ord bigint DEFAULT NULL::bigint)
 RETURNS TABLE(ord bigint, table_name text, row_id bigint, outcome text, revision bigint, conflict jsonb)
 LANGUAGE plpgsql
AS $function$
DECLARE
    tname text;
    cols text[];
    col_list text;
    src_list text;
    excl_list text;
    file_bearing boolean;
    ins_extra_cols text;
    ins_extra_vals text;
    upd_extra_cols text;
    upd_extra_vals text;
    g int := scsync_replicator_guard(NULL);
    bad record;
    fk record;
BEGIN
    -- The side decides what a deletion does (the cloud never hard-deletes): it must be
    -- this database's, whatever the caller says.
    IF p_side IS DISTINCT FROM (SELECT n.side FROM scsync_node n) THEN
        RAISE EXCEPTION 'this database is not the % side', p_side USING ERRCODE = 'SC203';
    END IF;
    PERFORM scsync_replicator_stage(p_batch);
    -- A site sends its own rows only, each under its own id (the content's id is the one
    -- written), and only to synced tables.
    IF g IS NOT NULL THEN
        SELECT s.table_name, s.row_id, s.row_data ->> 'site_id' AS site,
               s.row_data ->> 'id' AS content_id INTO bad
          FROM pg_temp.scsync_stage s
         WHERE (p_only_ord IS NULL OR s.ord = p_only_ord) AND s.op <> 'D'
           AND ((s.row_data ->> 'site_id') IS DISTINCT FROM g::text
                OR (s.row_data ->> 'id') IS DISTINCT FROM s.row_id::text)
         ORDER BY s.ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'site % may not send % %: its content is of site % (id %)', g,
                bad.table_name, bad.row_id, coalesce(bad.site, 'none'),
                coalesce(bad.content_id, 'none') USING ERRCODE = '42501';
        END IF;
        SELECT s.table_name INTO bad FROM pg_temp.scsync_stage s
         WHERE (p_only_ord IS NULL OR s.ord = p_only_ord)
           AND NOT EXISTS (SELECT 1 FROM scsync_synced_tables st
                            WHERE st.table_name = s.table_name)
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'site % may not send rows of %: not a synced table', g,
                bad.table_name USING ERRCODE = '42501';
        END IF;
    END IF;
    FOR tname IN SELECT DISTINCT s.table_name FROM pg_temp.scsync_stage s
                  WHERE p_only_ord IS NULL OR s.ord = p_only_ord LOOP
        IF NOT EXISTS (SELECT 1 FROM scsync_synced_tables st WHERE st.table_name = tname) THEN
            RAISE EXCEPTION 'table % is not synced here', tname USING ERRCODE = 'SC201';
        END IF;
        -- Lock the destination records as they are read: a user's concurrent save
        -- then either happened before (and is classified against) or waits for us.
        EXECUTE format('UPDATE pg_temp.scsync_stage s SET dest_row = d.row, dest_revision = d.rev
                          FROM (SELECT s2.ord, to_jsonb(t) AS row, t.revision AS rev
                                  FROM pg_temp.scsync_stage s2 JOIN %I t ON t.id = s2.row_id
                                 WHERE s2.table_name = $1 AND ($2 IS NULL OR s2.ord = $2)
                                 ORDER BY t.id FOR UPDATE OF t) d
                         WHERE s.ord = d.ord', tname)
        USING tname, p_only_ord;
    END LOOP;

    IF g IS NOT NULL THEN
        SELECT s.table_name, s.row_id, s.dest_row ->> 'site_id' AS site INTO bad
          FROM pg_temp.scsync_stage s
         WHERE (p_only_ord IS NULL OR s.ord = p_only_ord)
           AND coalesce((s.dest_row ->> 'site_id')::int, g) <> g
         ORDER BY s.ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'site % may not change % %: it belongs to site %', g,
                bad.table_name, bad.row_id, bad.site USING ERRCODE = '42501';
        END IF;
        -- Every record a row refers to (a single-column foreign key to a table with a
        -- site) must be the site's own too.
        FOR fk IN
            SELECT s.table_name AS tname, a.attname::text AS col,
                   c.confrelid::regclass::text AS ref, ra.attname::text AS refcol,
                   format_type(ra.atttypid, ra.atttypmod) AS reftype
              FROM (SELECT DISTINCT s2.table_name FROM pg_temp.scsync_stage s2
                     WHERE p_only_ord IS NULL OR s2.ord = p_only_ord) s
              JOIN pg_constraint c ON c.conrelid = s.table_name::regclass AND c.contype = 'f'
                                  AND array_length(c.conkey, 1) = 1
              JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
              JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = c.confkey[1]
             WHERE EXISTS (SELECT 1 FROM pg_attribute x
                            WHERE x.attrelid = c.confrelid AND x.attname = 'site_id'
                              AND NOT x.attisdropped)
        LOOP
            EXECUTE format(
                'SELECT s.table_name, s.row_id, r.%3$I::text AS ref_id, r.site_id AS site
                   FROM pg_temp.scsync_stage s JOIN %2$s r ON r.%3$I = (s.row_data ->> %4$L)::%5$s
                  WHERE s.table_name = %1$L AND s.op <> ''D'' AND ($1 IS NULL OR s.ord = $1)
                    AND r.site_id IS DISTINCT FROM $2
                  ORDER BY s.ord LIMIT 1', fk.tname, fk.ref, fk.refcol, fk.col, fk.reftype)
               INTO bad USING p_only_ord, g;
            IF bad IS NOT NULL AND bad.table_name IS NOT NULL THEN
                RAISE EXCEPTION 'site % may not send % %: its % refers to % % of site %', g,
                    bad.table_name, bad.row_id, fk.col, fk.ref, bad.ref_id, bad.site
                    USING ERRCODE = '42501';
            END IF;
        END LOOP;
    END IF;

    UPDATE pg_temp.scsync_stage s SET outcome = CASE
        WHEN s.op = 'D' THEN CASE
            WHEN s.dest_row IS NULL THEN 'duplicate'
            WHEN p_side = 'cloud' AND (s.dest_row ->> 'deleted')::boolean THEN 'duplicate'
            WHEN s.dest_revision = s.base OR s.dest_revision = s.revision THEN 'apply'
            -- A deletion that a resolution here already decided on, arriving late (its
            -- lane had not caught up when the user resolved): nothing left to decide.
            WHEN EXISTS (SELECT 1 FROM scsync_conflicts c
                          WHERE c.table_name = s.table_name AND c.row_id = s.row_id
                            AND c.status = 'resolved'
                            AND CASE WHEN p_side = 'cloud' THEN c.local_row
                                     ELSE c.cloud_row END IS NULL
                            AND (c.base_revision = s.base
                                 OR CASE WHEN p_side = 'cloud' THEN c.local_revision
                                         ELSE c.cloud_revision END = s.revision)) THEN 'duplicate'
            ELSE 'conflict' END
        WHEN s.dest_row IS NULL THEN CASE
            WHEN s.base IS NULL THEN 'apply'
            WHEN EXISTS (SELECT 1 FROM scsync_history h
                          WHERE h.table_name = s.table_name AND h.row_id = s.row_id
                            AND h.revision = s.revision) THEN 'duplicate'
            ELSE 'conflict' END
        WHEN s.dest_revision = s.revision THEN 'duplicate'
        WHEN s.dest_revision = s.base THEN 'apply'
        WHEN EXISTS (SELECT 1 FROM scsync_history h
                      WHERE h.table_name = s.table_name AND h.row_id = s.row_id
                        AND h.revision = s.revision) THEN 'duplicate'
        ELSE 'conflict' END
     WHERE p_only_ord IS NULL OR s.ord = p_only_ord;

    FOR tname IN SELECT DISTINCT s.table_name FROM pg_temp.scsync_stage s
                  WHERE (p_only_ord IS NULL OR s.ord = p_only_ord)
                    AND s.outcome IN ('apply', 'conflict') LOOP
        SELECT array_agg(c ORDER BY c) INTO cols
          FROM jsonb_array_elements_text(p_columns -> tname) c;
        IF cols IS NULL OR NOT ('id' = ANY(cols)) THEN
            RAISE EXCEPTION 'no common columns for table %', tname USING ERRCODE = 'SC202';
        END IF;
        SELECT string_agg(quote_ident(c), ', ' ORDER BY c),
               string_agg('r.' || quote_ident(c), ', ' ORDER BY c),
               string_agg('EXCLUDED.' || quote_ident(c), ', ' ORDER BY c)
          INTO col_list, src_list, excl_list
          FROM unnest(cols) c;
        SELECT st.file_column IS NOT NULL INTO file_bearing
          FROM scsync_synced_tables st WHERE st.table_name = tname;
        ins_extra_cols := '';
        ins_extra_vals := '';
        upd_extra_cols := '';
        upd_extra_vals := '';
        IF p_side = 'cloud' THEN
            ins_extra_cols := ins_extra_cols || ', lifecycle';
            ins_extra_vals := ins_extra_vals
                || ', CASE WHEN r.deleted THEN ''deleted'' ELSE ''active'' END';
            upd_extra_cols := upd_extra_cols || ', lifecycle';
            upd_extra_vals := upd_extra_vals || format(
                ', CASE WHEN EXCLUDED.deleted THEN ''deleted''
                        WHEN %1$I.lifecycle = ''deleted'' THEN ''active''
                        ELSE %1$I.lifecycle END', tname);
        END IF;
        IF file_bearing THEN
            -- Blob hook: a record that arrives with a (new) file has its file on the
            -- other side: locally 'remote' (the blob lane downloads it), on the cloud
            -- 'pending' (the files trigger turns it 'uploaded' once the blob is verified).
            ins_extra_cols := ins_extra_cols || ', blob_state';
            ins_extra_vals := ins_extra_vals || format(', %L',
                CASE WHEN p_side = 'cloud' THEN 'pending' ELSE 'remote' END);
            upd_extra_cols := upd_extra_cols || ', blob_state';
            upd_extra_vals := upd_extra_vals || format(
                ', CASE WHEN %1$I.blob_sha256 IS DISTINCT FROM EXCLUDED.blob_sha256
                        THEN %2$L ELSE %1$I.blob_state END', tname,
                CASE WHEN p_side = 'cloud' THEN 'pending' ELSE 'remote' END);
        END IF;

        -- Fast-forward inserts and updates, set-based.
        EXECUTE format(
            'INSERT INTO %1$I (%2$s, synced_revision, last_synced_at, in_conflict%5$s)
             SELECT %3$s, s.revision, clock_timestamp(), false%6$s
               FROM pg_temp.scsync_stage s, jsonb_populate_record(NULL::%1$I, s.row_data) r
              WHERE s.table_name = $1 AND s.outcome = ''apply'' AND s.op <> ''D''
                AND ($2 IS NULL OR s.ord = $2)
              ORDER BY s.ord
             ON CONFLICT (id) DO UPDATE
                SET (%2$s, synced_revision, last_synced_at, in_conflict%7$s)
                  = ROW(%4$s, EXCLUDED.synced_revision, EXCLUDED.last_synced_at, false%8$s)',
            tname, col_list, src_list, excl_list, ins_extra_cols, ins_extra_vals,
            upd_extra_cols, upd_extra_vals)
        USING tname, p_only_ord;

        -- Deletes: the cloud never hard-deletes; it keeps the record as deleted, under a
        -- new revision that both sides are known to hold (the site's copy is gone).
        IF p_side = 'cloud' THEN
            EXECUTE format(
                'UPDATE %1$I t SET deleted = true, lifecycle = ''deleted'', in_conflict = false,
                        revision = x.rev, synced_revision = x.rev,
                        last_synced_at = clock_timestamp(), updated_at = clock_timestamp()
                   FROM (SELECT s.row_id, scsync_snowflake() AS rev FROM pg_temp.scsync_stage s
                          WHERE s.table_name = $1 AND s.outcome = ''apply'' AND s.op = ''D''
                            AND ($2 IS NULL OR s.ord = $2)) x
                  WHERE t.id = x.row_id', tname)
            USING tname, p_only_ord;
        ELSE
            EXECUTE format(
                'DELETE FROM %1$I t USING pg_temp.scsync_stage s
                  WHERE s.table_name = $1 AND s.outcome = ''apply'' AND s.op = ''D''
                    AND ($2 IS NULL OR s.ord = $2) AND t.id = s.row_id', tname)
            USING tname, p_only_ord;
        END IF;

        -- Conflicts: mark the record; it keeps its content.
        EXECUTE format(
            'UPDATE %1$I t SET in_conflict = true FROM pg_temp.scsync_stage s
              WHERE s.table_name = $1 AND s.outcome = ''conflict''
                AND ($2 IS NULL OR s.ord = $2) AND t.id = s.row_id AND NOT t.in_conflict',
            tname)
        USING tname, p_only_ord;
    END LOOP;

    -- A record that was in conflict here and is now fast-forwarded was resolved on the
    -- other side: its open conflicts close with the resolution that came along.
    UPDATE scsync_conflicts c
       SET status = 'resolved',
           resolution = coalesce(s.resolution ->> 'resolution', c.resolution),
           resolved_by = coalesce(s.resolution ->> 'resolved_by', 'replicator'),
           resolved_at = clock_timestamp()
      FROM pg_temp.scsync_stage s
     WHERE (p_only_ord IS NULL OR s.ord = p_only_ord) AND s.outcome = 'apply'
       AND c.table_name = s.table_name AND c.row_id = s.row_id AND c.status = 'open';

    -- Both versions of each conflict: one open record per record, refreshed with the
    -- latest versions while it stays open.
    UPDATE pg_temp.scsync_stage s
       SET conflict_id = (SELECT min(c.id) FROM scsync_conflicts c
                           WHERE c.table_name = s.table_name AND c.row_id = s.row_id
                             AND c.status = 'open')
     WHERE (p_only_ord IS NULL OR s.ord = p_only_ord) AND s.outcome = 'conflict';
    UPDATE pg_temp.scsync_stage s SET conflict_id = scsync_snowflake()
     WHERE (p_only_ord IS NULL OR s.ord = p_only_ord) AND s.outcome = 'conflict'
       AND s.conflict_id IS NULL;
    INSERT INTO scsync_conflicts AS c (id, table_name, row_id, site_id, base_revision,
                                       local_revision, cloud_revision, local_row, cloud_row,
                                       detected_on)
    SELECT s.conflict_id, s.table_name, s.row_id,
           coalesce((s.dest_row ->> 'site_id')::int, (s.row_data ->> 'site_id')::int),
           s.base,
           CASE WHEN p_side = 'cloud' THEN s.revision ELSE s.dest_revision END,
           CASE WHEN p_side = 'cloud' THEN s.dest_revision ELSE s.revision END,
           CASE WHEN p_side = 'cloud' THEN s.row_data ELSE s.dest_row END,
           CASE WHEN p_side = 'cloud' THEN s.dest_row ELSE s.row_data END,
           p_side
      FROM pg_temp.scsync_stage s
     WHERE (p_only_ord IS NULL OR s.ord = p_only_ord) AND s.outcome = 'conflict'
    ON CONFLICT (id) DO UPDATE
       SET base_revision = EXCLUDED.base_revision,
           -- a side whose record is gone reports no revision: keep what is known
           local_revision = coalesce(EXCLUDED.local_revision, c.local_revision),
           cloud_revision = coalesce(EXCLUDED.cloud_revision, c.cloud_revision),
           local_row = EXCLUDED.local_row, cloud_row = EXCLUDED.cloud_row,
           detected_at = clock_timestamp();

    RETURN QUERY
    SELECT s.ord, s.table_name, s.row_id, s.outcome, s.revision,
           CASE WHEN s.outcome = 'conflict' THEN (
               SELECT to_jsonb(c) FROM scsync_conflicts c WHERE c.id = s.conflict_id)
           END
      FROM pg_temp.scsync_stage s
     WHERE p_only_ord IS NULL OR s.ord = p_only_ord
     ORDER BY s.ord;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_replicator_apply_batch(p_lane text, p_site_id integer, p_side text, p_columns jsonb, p_seqs jsonb, p_forget bigint[], p_source_commit_at timestamp with time zone, p_peer_schema_revision text, p_batch jsonb)
 RETURNS TABLE(ord bigint, table_name text, row_id bigint, outcome text, revision bigint, conflict text, batch_id bigint)
 LANGUAGE plpgsql
AS $function$
#variable_conflict use_column
DECLARE
    b bigint;
    n int;
BEGIN
    PERFORM scsync_replicator_guard(p_site_id);
    PERFORM set_config('scsync.replicating', 'on', true);
    DELETE FROM scsync_inbox i
     WHERE i.lane = p_lane AND i.site_id = p_site_id AND i.batch_id = ANY(p_forget);
    n := jsonb_array_length(p_batch);
    INSERT INTO scsync_inbox (lane, site_id, batch_id, source_seqs, row_count)
    VALUES (p_lane, p_site_id, scsync_snowflake(), p_seqs, n)
    RETURNING scsync_inbox.batch_id INTO b;
    INSERT INTO scsync_replication_cursor AS c (lane, site_id, last_batch_id, last_applied_at,
                                                last_source_commit_at, rows_applied,
                                                peer_schema_revision)
    VALUES (p_lane, p_site_id, b, clock_timestamp(), p_source_commit_at, n,
            p_peer_schema_revision)
    ON CONFLICT (lane, site_id) DO UPDATE
       SET last_batch_id = EXCLUDED.last_batch_id,
           last_applied_at = EXCLUDED.last_applied_at,
           last_source_commit_at = greatest(c.last_source_commit_at,
                                            EXCLUDED.last_source_commit_at),
           rows_applied = c.rows_applied + EXCLUDED.rows_applied,
           peer_schema_revision = EXCLUDED.peer_schema_revision;
    RETURN QUERY
    SELECT a.ord, a.table_name, a.row_id, a.outcome, a.revision, a.conflict::text, b
      FROM scsync_replicator_apply(p_side, p_columns, p_batch) a;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_replicator_check_keys(p_keys jsonb, p_site integer)
 RETURNS void
 LANGUAGE plpgsql
 STABLE
AS $function$
DECLARE
    tname text;
    bad_id bigint;
    bad_site int;
BEGIN
    IF p_site IS NULL THEN
        RETURN;
    END IF;
    FOR tname IN SELECT DISTINCT k ->> 't' FROM jsonb_array_elements(p_keys) k LOOP
        IF NOT EXISTS (SELECT 1 FROM scsync_synced_tables st WHERE st.table_name = tname) THEN
            RAISE EXCEPTION 'table % is not synced', tname USING ERRCODE = '42501';
        END IF;
        EXECUTE format('SELECT t.id, t.site_id FROM %I t
                          JOIN jsonb_array_elements($1) k
                            ON k ->> ''t'' = $2 AND (k ->> ''id'')::bigint = t.id
                         WHERE t.site_id IS DISTINCT FROM $3 ORDER BY t.id LIMIT 1', tname)
           INTO bad_id, bad_site USING p_keys, tname, p_site;
        IF bad_id IS NOT NULL THEN
            RAISE EXCEPTION 'site % may not name % %: it belongs to site %', p_site, tname,
                bad_id, bad_site USING ERRCODE = '42501';
        END IF;
    END LOOP;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_replicator_claim_lsn(p_lane text, p_site_id integer, p_lsn pg_lsn)
 RETURNS boolean
 LANGUAGE plpgsql
AS $function$
DECLARE
    claimed boolean;
BEGIN
    PERFORM scsync_replicator_guard(p_site_id);
    INSERT INTO scsync_replication_cursor AS c (lane, site_id, source_lsn)
    VALUES (p_lane, p_site_id, p_lsn)
    ON CONFLICT (lane, site_id) DO UPDATE SET source_lsn = EXCLUDED.source_lsn
     WHERE c.source_lsn IS NULL OR c.source_lsn < EXCLUDED.source_lsn
    RETURNING true INTO claimed;
    RETURN coalesce(claimed, false);
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_replicator_guard(p_site_id integer)
 RETURNS integer
 LANGUAGE sql
 STABLE
AS $function$
    SELECT NULL::int
$function$;

CREATE OR REPLACE FUNCTION public.scsync_replicator_outbox_keys(p_seqs bigint[])
 RETURNS TABLE(t text, id bigint)
 LANGUAGE plpgsql
 STABLE
AS $function$
DECLARE
    g int := scsync_replicator_guard(NULL);
    bad record;
BEGIN
    IF g IS NOT NULL THEN
        SELECT o.seq, o.table_name, o.row_id, o.site_id INTO bad FROM scsync_outbox o
         WHERE o.seq = ANY(p_seqs) AND o.site_id <> g ORDER BY o.seq LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'site % may not name outbox seq % (% %): it belongs to site %',
                g, bad.seq, bad.table_name, bad.row_id, bad.site_id USING ERRCODE = '42501';
        END IF;
    END IF;
    RETURN QUERY SELECT DISTINCT o.table_name, o.row_id FROM scsync_outbox o
                  WHERE o.seq = ANY(p_seqs);
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_replicator_park(p_lane text, p_table text, p_row_id bigint, p_site_id integer, p_revision bigint, p_reason text, p_initial_s double precision, p_max_s double precision)
 RETURNS void
 LANGUAGE sql
AS $function$
    SELECT scsync_replicator_guard(p_site_id);
    SELECT scsync_replicator_check_keys(
        jsonb_build_array(jsonb_build_object('t', p_table, 'id', p_row_id)),
        scsync_replicator_guard(p_site_id));
    INSERT INTO scsync_dead_letters AS d (lane, table_name, row_id, site_id, revision, reason,
                                          attempts, next_retry_at)
    VALUES (p_lane, p_table, p_row_id, p_site_id, p_revision, p_reason, 1,
            clock_timestamp() + make_interval(secs => p_initial_s * (0.5 + random())))
    ON CONFLICT (lane, table_name, row_id) DO UPDATE
       SET reason = EXCLUDED.reason, revision = EXCLUDED.revision,
           attempts = d.attempts + 1, last_failed_at = clock_timestamp(),
           next_retry_at = clock_timestamp() + make_interval(secs =>
               least(p_max_s, p_initial_s * power(2, least(d.attempts, 30)))
               * (0.5 + random()))
     -- one site's dead letter is never rewritten for another
     WHERE d.site_id = EXCLUDED.site_id
$function$;

CREATE OR REPLACE FUNCTION public.scsync_replicator_read(p_lane text, p_site_id integer, p_limit integer, p_exclude jsonb, p_skip bigint[])
 RETURNS TABLE(ord bigint, seqs bigint[], table_name text, row_id bigint, op text, revision bigint, base bigint, row_data text, source_commit_at timestamp with time zone, resolution jsonb)
 LANGUAGE plpgsql
AS $function$
BEGIN
    PERFORM scsync_replicator_guard(p_site_id);
    -- The scratch table: this session's own, or made now (scsync_scratch_ok).
    IF NOT scsync_scratch_ok('scsync_read_keys', 'scsync_read_key') THEN
        DROP TABLE IF EXISTS pg_temp.scsync_read_keys;
        CREATE TEMP TABLE pg_temp.scsync_read_keys OF scsync_read_key ON COMMIT DELETE ROWS;
    END IF;
    LOOP
        -- DELETE, not TRUNCATE: a truncate writes the catalog (a new file) every call.
        DELETE FROM pg_temp.scsync_read_keys;
        INSERT INTO pg_temp.scsync_read_keys (ord, seqs, table_name, row_id, last_op, last_revision,
                                      last_base, source_commit_at)
        SELECT min(o.seq), array_agg(o.seq ORDER BY o.seq), o.table_name, o.row_id,
               (array_agg(o.op ORDER BY o.seq DESC))[1],
               (array_agg(o.revision ORDER BY o.seq DESC))[1],
               (array_agg(o.synced_revision ORDER BY o.seq DESC))[1],
               max(o.created_at)
          FROM (SELECT * FROM scsync_outbox ob
                 WHERE ob.site_id = p_site_id
                   -- A record with a change in the batch still in flight waits whole
                   -- (that change's own row included): its later changes need that
                   -- batch's ack first, or they would be sent with a stale base
                   -- (synced_revision) and make a false conflict. One hashed set of the
                   -- busy records, not a scan of p_skip per outbox row.
                   AND (ob.table_name, ob.row_id) NOT IN (
                       SELECT f.table_name, f.row_id FROM scsync_outbox f
                        WHERE f.seq = ANY(p_skip))
                   AND NOT EXISTS (
                       SELECT 1 FROM scsync_dead_letters d
                        WHERE d.lane = p_lane AND d.table_name = ob.table_name
                          AND d.row_id = ob.row_id AND d.next_retry_at > clock_timestamp())
                 ORDER BY ob.seq
                 LIMIT p_limit) o
         GROUP BY o.table_name, o.row_id;

        PERFORM scsync_read_keys_switch();
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_temp.scsync_read_keys k WHERE k.held);
        DELETE FROM scsync_outbox o USING pg_temp.scsync_read_keys k
         WHERE k.held AND o.seq = ANY(k.seqs);
        DELETE FROM pg_temp.scsync_read_keys k WHERE k.held;
        -- Only withheld changes in this slice of the outbox: look at the next one.
        EXIT WHEN EXISTS (SELECT 1 FROM pg_temp.scsync_read_keys);
    END LOOP;

    RETURN QUERY SELECT * FROM scsync_read_keys_rows(p_exclude);
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_replicator_recover_rows(p_keys jsonb)
 RETURNS jsonb
 LANGUAGE sql
 STABLE
AS $function$
    SELECT scsync_replicator_check_keys(p_keys, scsync_replicator_guard(NULL));
    WITH g AS (SELECT scsync_replicator_guard(NULL) AS site)
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               't', k ->> 't', 'id', (k ->> 'id')::bigint,
               'revs', (SELECT coalesce(jsonb_agg(h.revision), '[]'::jsonb)
                          FROM scsync_history h
                         WHERE h.table_name = k ->> 't' AND h.row_id = (k ->> 'id')::bigint
                           AND (g.site IS NULL OR h.site_id = g.site)),
               'conflict', (SELECT to_jsonb(c) FROM scsync_conflicts c
                             WHERE c.table_name = k ->> 't'
                               AND c.row_id = (k ->> 'id')::bigint AND c.status = 'open'
                               AND (g.site IS NULL OR c.site_id = g.site)
                             ORDER BY c.detected_at DESC LIMIT 1))), '[]'::jsonb)
      FROM jsonb_array_elements(p_keys) k, g
$function$;

CREATE OR REPLACE FUNCTION public.scsync_replicator_stage(p_batch jsonb)
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE
    n int;
BEGIN
    IF NOT scsync_scratch_ok('scsync_stage', 'scsync_stage_row') THEN
        DROP TABLE IF EXISTS pg_temp.scsync_stage;
        CREATE TEMP TABLE pg_temp.scsync_stage OF scsync_stage_row (
            ord WITH OPTIONS NOT NULL,
            table_name WITH OPTIONS NOT NULL,
            row_id WITH OPTIONS NOT NULL,
            op WITH OPTIONS NOT NULL,
            revision WITH OPTIONS NOT NULL
        ) ON COMMIT DELETE ROWS;
    END IF;
    -- Per call (a record-by-record apply calls again in the same transaction).
    DELETE FROM pg_temp.scsync_stage;
    INSERT INTO pg_temp.scsync_stage (ord, table_name, row_id, op, revision, base, row_data,
                                      resolution)
    SELECT x.ord, x.table_name, x.row_id, x.op, x.revision, x.base, x.row_data, x.resolution
      FROM jsonb_to_recordset(coalesce(p_batch, '[]'::jsonb))
           AS x(ord bigint, table_name text, row_id bigint, op text, revision bigint,
                base bigint, row_data jsonb, resolution jsonb);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_resolve_conflict(p_conflict_id bigint, p_keep text, p_by text)
 RETURNS bigint
 LANGUAGE plpgsql
AS $function$
DECLARE
    c scsync_conflicts%ROWTYPE;
    here text;
    kept jsonb;
    other_rev bigint;
    other_row jsonb;
    new_rev bigint;
    cols text;
    src text;
    exists_here boolean;
BEGIN
    SELECT side INTO here FROM scsync_node;
    SELECT * INTO c FROM scsync_conflicts WHERE id = p_conflict_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no conflict %', p_conflict_id USING ERRCODE = 'SC210';
    END IF;
    IF c.status <> 'open' THEN
        RAISE EXCEPTION 'conflict % is already resolved (%)', p_conflict_id, c.resolution
            USING ERRCODE = 'SC211';
    END IF;
    IF p_keep NOT IN ('local', 'cloud') THEN
        RAISE EXCEPTION 'keep must be local or cloud, not %', p_keep USING ERRCODE = 'SC212';
    END IF;
    PERFORM set_config('scsync.replicating', 'on', true);
    EXECUTE format('SELECT to_jsonb(t) FROM %I t WHERE t.id = $1 FOR UPDATE', c.table_name)
       INTO kept USING c.row_id;
    exists_here := kept IS NOT NULL;
    IF here = 'local' THEN
        other_rev := c.cloud_revision;
        other_row := c.cloud_row;
    ELSE
        other_rev := c.local_revision;
        other_row := c.local_row;
    END IF;
    IF p_keep <> here THEN
        kept := other_row;  -- the other side's version as last reported
    END IF;
    -- Both versions this resolution decided between are now part of this side's
    -- history: the other side's one may still be on its way (its lane had not caught up
    -- when the user resolved), and when it arrives the apply rule finds it here and takes
    -- it as a duplicate, not as a new conflict with the resolution's revision.
    IF other_row IS NOT NULL AND other_rev IS NOT NULL THEN
        INSERT INTO scsync_history (table_name, row_id, site_id, revision, version_major,
                                    version_minor, op, row_data, origin)
        VALUES (c.table_name, c.row_id, c.site_id, other_rev,
                coalesce((other_row ->> 'version_major')::int, 0),
                coalesce((other_row ->> 'version_minor')::int, 0),
                'U', other_row, 'resolution')
        ON CONFLICT (table_name, row_id, revision) DO NOTHING;
    END IF;

    IF kept IS NULL THEN
        -- The kept version is a deletion.
        IF here = 'local' THEN
            IF exists_here THEN
                EXECUTE format('DELETE FROM %I WHERE id = $1', c.table_name) USING c.row_id;
            END IF;
            -- A tombstone based on the cloud's revision fast-forwards the cloud to deleted.
            INSERT INTO scsync_outbox (table_name, row_id, site_id, op, origin, revision,
                                       synced_revision)
            VALUES (c.table_name, c.row_id, c.site_id, 'D', here,
                    coalesce(c.local_revision, c.cloud_revision), c.cloud_revision);
        ELSE
            new_rev := scsync_snowflake();
            EXECUTE format('UPDATE %I SET deleted = true, lifecycle = ''deleted'',
                                   revision = $2, synced_revision = NULL, in_conflict = false,
                                   updated_at = clock_timestamp() WHERE id = $1', c.table_name)
            USING c.row_id, new_rev;
            INSERT INTO scsync_outbox (table_name, row_id, site_id, op, origin, revision,
                                       synced_revision)
            VALUES (c.table_name, c.row_id, c.site_id, 'U', here, new_rev, NULL);
        END IF;
    ELSE
        new_rev := scsync_snowflake();
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),
               string_agg('r.' || quote_ident(a.attname), ', ' ORDER BY a.attnum)
          INTO cols, src
          FROM pg_attribute a
         WHERE a.attrelid = c.table_name::regclass AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attgenerated = '' AND kept ? a.attname::text
           AND a.attname::text <> ALL (scsync_bookkeeping_columns() || ARRAY['id']);
        IF exists_here THEN
            EXECUTE format('UPDATE %1$I t SET (%2$s) = (SELECT %3$s FROM
                                jsonb_populate_record(NULL::%1$I, $2) r),
                                revision = $3, synced_revision = $4, in_conflict = false,
                                updated_at = clock_timestamp()
                             WHERE t.id = $1', c.table_name, cols, src)
            USING c.row_id, kept, new_rev, CASE WHEN other_row IS NULL THEN NULL ELSE other_rev END;
        ELSE
            EXECUTE format('INSERT INTO %1$I (id, %2$s, revision, synced_revision, updated_at)
                            SELECT $1, %3$s, $3, $4, clock_timestamp()
                              FROM jsonb_populate_record(NULL::%1$I, $2) r',
                           c.table_name, cols, src)
            USING c.row_id, kept, new_rev, CASE WHEN other_row IS NULL THEN NULL ELSE other_rev END;
        END IF;
        INSERT INTO scsync_outbox (table_name, row_id, site_id, op, origin, revision,
                                   synced_revision)
        VALUES (c.table_name, c.row_id, c.site_id, 'U', here, new_rev,
                CASE WHEN other_row IS NULL THEN NULL ELSE other_rev END);
    END IF;
    PERFORM pg_notify('scsync_outbox', c.site_id::text);
    UPDATE scsync_conflicts
       SET status = 'resolved', resolution = p_keep, resolved_by = p_by,
           resolved_at = clock_timestamp()
     WHERE table_name = c.table_name AND row_id = c.row_id AND status = 'open';
    PERFORM set_config('scsync.replicating', '', true);
    RETURN new_rev;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_scratch_ok(p_name text, p_type regtype)
 RETURNS boolean
 LANGUAGE sql
 STABLE
AS $function$
    SELECT coalesce((
        SELECT c.relkind = 'r' AND c.relpersistence = 't' AND c.reloftype = p_type
               AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
               AND c.relam = (SELECT oid FROM pg_am WHERE amname = 'heap')
               AND NOT c.relhastriggers AND NOT c.relhasrules AND NOT c.relrowsecurity
               AND NOT c.relhasindex AND NOT c.relhassubclass AND NOT c.relispartition
               AND NOT EXISTS (SELECT 1 FROM pg_attrdef d WHERE d.adrelid = c.oid)
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k
                                WHERE k.conrelid = c.oid AND k.contype <> 'n')
               AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
          FROM pg_class c
         WHERE c.oid = to_regclass('pg_temp.' || p_name)), false)
$function$;

CREATE OR REPLACE FUNCTION public.scsync_snowflake()
 RETURNS bigint
 LANGUAGE plpgsql
AS $function$
DECLARE
    node int;
    blk text[];
    stmt text := statement_timestamp()::text;
    next_l bigint;
    end_l bigint;
    size int := 1;
    last_l bigint;
    now_ms bigint;
BEGIN
    blk := string_to_array(current_setting('scsync.id_block', true), ',');
    IF blk[1] = stmt AND blk[2]::bigint <= blk[3]::bigint THEN
        next_l := blk[2]::bigint;
        end_l := blk[3]::bigint;
        node := blk[4]::int;
        size := blk[5]::int;
    ELSE
        IF blk[1] = stmt THEN
            size := least(blk[5]::int * 2, 256);
        END IF;
        SELECT node_id INTO node FROM scsync_node;
        IF node IS NULL THEN
            RAISE EXCEPTION 'scsync node id is not configured (run: scsync db set-node)'
                USING ERRCODE = 'SC001';
        END IF;
        PERFORM pg_advisory_lock(7308901234567890001);
        SELECT last_value INTO last_l FROM scsync_snowflake_l;
        LOOP
            now_ms := scsync_clock_ms();
            IF now_ms < (last_l >> 10) THEN
                PERFORM pg_advisory_unlock(7308901234567890001);
                RAISE EXCEPTION 'clock moved backwards by % ms; refusing to generate ids',
                    (last_l >> 10) - now_ms USING ERRCODE = 'SC002';
            END IF;
            IF now_ms > (last_l >> 10) THEN
                next_l := now_ms << 10;
                EXIT;
            END IF;
            IF (last_l & 1023) < 1023 THEN
                next_l := last_l + 1;
                EXIT;
            END IF;
            -- 1024 ids in this millisecond already: wait for the next one rather than
            -- run ahead of the clock.
            PERFORM pg_sleep(0.0002);
        END LOOP;
        end_l := least(next_l + size - 1, next_l | 1023);
        PERFORM setval('scsync_snowflake_l', end_l);
        PERFORM pg_advisory_unlock(7308901234567890001);
    END IF;
    PERFORM set_config('scsync.id_block',
                       concat_ws(',', stmt, next_l + 1, end_l, node, size), false);
    RETURN ((next_l >> 10) << 22) | (node::bigint << 10) | (next_l & 1023);
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_stamp_update()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF (to_jsonb(NEW) - scsync_bookkeeping_columns())
       IS DISTINCT FROM (to_jsonb(OLD) - scsync_bookkeeping_columns()) THEN
        NEW.revision := nextval('scsync_revision_seq');
        NEW.updated_at := clock_timestamp();
    ELSE
        NEW.revision := OLD.revision;
    END IF;
    RETURN NEW;
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_unregister_table(tbl regclass)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
DECLARE
    old_trigger text;
BEGIN
    FOREACH old_trigger IN ARRAY ARRAY['scsync_stamp', 'scsync_capture_ins',
                                       'scsync_capture_upd', 'scsync_capture_del'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', old_trigger, tbl);
    END LOOP;
    EXECUTE format('ALTER TABLE %s ALTER COLUMN revision DROP DEFAULT', tbl);
    DELETE FROM scsync_synced_tables
     WHERE table_name = (SELECT relname FROM pg_class WHERE oid = tbl);
END
$function$;

CREATE OR REPLACE FUNCTION public.scsync_wake()
 RETURNS void
 LANGUAGE sql
AS $function$
    SELECT pg_notify('scsync_outbox', ''), pg_notify('scsync_api_events', '')
$function$;

-- ==== triggers ====

CREATE TRIGGER scsync_capture_del AFTER DELETE ON captures REFERENCING OLD TABLE AS scsync_old FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('file');

CREATE TRIGGER scsync_capture_ins AFTER INSERT ON captures REFERENCING NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('file');

CREATE TRIGGER scsync_capture_upd AFTER UPDATE ON captures REFERENCING OLD TABLE AS scsync_old NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('file');

CREATE TRIGGER scsync_stamp BEFORE UPDATE ON captures FOR EACH ROW WHEN (NOT scsync_is_replicating()) EXECUTE FUNCTION scsync_stamp_update();

CREATE TRIGGER scsync_capture_del AFTER DELETE ON doctors REFERENCING OLD TABLE AS scsync_old FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_capture_ins AFTER INSERT ON doctors REFERENCING NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_capture_upd AFTER UPDATE ON doctors REFERENCING OLD TABLE AS scsync_old NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_stamp BEFORE UPDATE ON doctors FOR EACH ROW WHEN (NOT scsync_is_replicating()) EXECUTE FUNCTION scsync_stamp_update();

CREATE TRIGGER scsync_capture_del AFTER DELETE ON images REFERENCING OLD TABLE AS scsync_old FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('file');

CREATE TRIGGER scsync_capture_ins AFTER INSERT ON images REFERENCING NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('file');

CREATE TRIGGER scsync_capture_upd AFTER UPDATE ON images REFERENCING OLD TABLE AS scsync_old NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('file');

CREATE TRIGGER scsync_stamp BEFORE UPDATE ON images FOR EACH ROW WHEN (NOT scsync_is_replicating()) EXECUTE FUNCTION scsync_stamp_update();

CREATE TRIGGER scsync_capture_del AFTER DELETE ON patients REFERENCING OLD TABLE AS scsync_old FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_capture_ins AFTER INSERT ON patients REFERENCING NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_capture_upd AFTER UPDATE ON patients REFERENCING OLD TABLE AS scsync_old NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_stamp BEFORE UPDATE ON patients FOR EACH ROW WHEN (NOT scsync_is_replicating()) EXECUTE FUNCTION scsync_stamp_update();

CREATE TRIGGER scsync_capture_del AFTER DELETE ON project_files REFERENCING OLD TABLE AS scsync_old FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('file');

CREATE TRIGGER scsync_capture_ins AFTER INSERT ON project_files REFERENCING NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('file');

CREATE TRIGGER scsync_capture_upd AFTER UPDATE ON project_files REFERENCING OLD TABLE AS scsync_old NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('file');

CREATE TRIGGER scsync_stamp BEFORE UPDATE ON project_files FOR EACH ROW WHEN (NOT scsync_is_replicating()) EXECUTE FUNCTION scsync_stamp_update();

CREATE TRIGGER scsync_capture_del AFTER DELETE ON report_templates REFERENCING OLD TABLE AS scsync_old FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_capture_ins AFTER INSERT ON report_templates REFERENCING NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_capture_upd AFTER UPDATE ON report_templates REFERENCING OLD TABLE AS scsync_old NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_stamp BEFORE UPDATE ON report_templates FOR EACH ROW WHEN (NOT scsync_is_replicating()) EXECUTE FUNCTION scsync_stamp_update();

CREATE TRIGGER scsync_capture_del AFTER DELETE ON reports REFERENCING OLD TABLE AS scsync_old FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_capture_ins AFTER INSERT ON reports REFERENCING NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_capture_upd AFTER UPDATE ON reports REFERENCING OLD TABLE AS scsync_old NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_stamp BEFORE UPDATE ON reports FOR EACH ROW WHEN (NOT scsync_is_replicating()) EXECUTE FUNCTION scsync_stamp_update();

CREATE TRIGGER scsync_node_sequences AFTER INSERT OR UPDATE OF node_id ON scsync_node FOR EACH ROW EXECUTE FUNCTION scsync_node_sequences();

CREATE TRIGGER scsync_capture_del AFTER DELETE ON settings REFERENCING OLD TABLE AS scsync_old FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_capture_ins AFTER INSERT ON settings REFERENCING NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_capture_upd AFTER UPDATE ON settings REFERENCING OLD TABLE AS scsync_old NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_stamp BEFORE UPDATE ON settings FOR EACH ROW WHEN (NOT scsync_is_replicating()) EXECUTE FUNCTION scsync_stamp_update();

CREATE TRIGGER scsync_capture_del AFTER DELETE ON user_accounts REFERENCING OLD TABLE AS scsync_old FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_capture_ins AFTER INSERT ON user_accounts REFERENCING NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_capture_upd AFTER UPDATE ON user_accounts REFERENCING OLD TABLE AS scsync_old NEW TABLE AS scsync_new FOR EACH STATEMENT EXECUTE FUNCTION scsync_capture_rows('plain');

CREATE TRIGGER scsync_stamp BEFORE UPDATE ON user_accounts FOR EACH ROW WHEN (NOT scsync_is_replicating()) EXECUTE FUNCTION scsync_stamp_update();

-- ==== publications ====

CREATE PUBLICATION scsync_capture WITH (publish = 'insert, update, delete, truncate');
ALTER PUBLICATION scsync_capture ADD TABLE captures;
ALTER PUBLICATION scsync_capture ADD TABLE doctors;
ALTER PUBLICATION scsync_capture ADD TABLE images;
ALTER PUBLICATION scsync_capture ADD TABLE patients;
ALTER PUBLICATION scsync_capture ADD TABLE project_files;
ALTER PUBLICATION scsync_capture ADD TABLE report_templates;
ALTER PUBLICATION scsync_capture ADD TABLE reports;
ALTER PUBLICATION scsync_capture ADD TABLE settings;
ALTER PUBLICATION scsync_capture ADD TABLE user_accounts;

-- ==== privileges ====

-- ON FUNCTION scsync_api_events_after(p_after bigint, p_site integer, p_limit integer): EXECUTE TO <owner>
-- ON FUNCTION scsync_api_events_newest(): EXECUTE TO <owner>
-- ON FUNCTION scsync_api_patient_of(tbl text, r jsonb): EXECUTE TO <owner>
-- ON FUNCTION scsync_api_publish(p_site integer, p_type text, p_table text, p_row bigint, p_patient bigint, p_payload jsonb): EXECUTE TO <owner>
-- ON FUNCTION scsync_api_sync_state(r jsonb, side_name text): EXECUTE TO <owner>
-- ON FUNCTION scsync_blob_in_scope(tbl text, rid bigint, modality text, record_date date): EXECUTE TO <owner>
-- ON FUNCTION scsync_bookkeeping_columns(): EXECUTE TO <owner>
-- ON FUNCTION scsync_capture_attach(tbl regclass): EXECUTE TO <owner>
-- ON FUNCTION scsync_capture_publish(tbl regclass): EXECUTE TO <owner>
-- ON FUNCTION scsync_capture_read(p_lane text, p_site_id integer, p_changes jsonb, p_exclude jsonb, p_busy jsonb, p_xids bigint[]): EXECUTE TO <owner>
-- ON FUNCTION scsync_capture_requeue(p_site_id integer, p_keys jsonb): EXECUTE TO <owner>
-- ON FUNCTION scsync_capture_resync(p_slot text, p_lsn text): EXECUTE TO <owner>
-- ON FUNCTION scsync_capture_rows(): EXECUTE TO <owner>
-- ON FUNCTION scsync_capture_wait_visible(p_xids bigint[], p_wait_s double precision): EXECUTE TO <owner>
-- ON FUNCTION scsync_clock_ms(): EXECUTE TO <owner>
-- ON FUNCTION scsync_history_save(tbl regclass, p_row_id bigint, p_op text): EXECUTE TO <owner>
-- ON FUNCTION scsync_is_replicating(): EXECUTE TO <owner>
-- ON FUNCTION scsync_lockd_apply(tbl regclass, p_row_id bigint, p_changes jsonb, p_bump text, p_protected text[], OUT changed boolean, OUT new_major integer, OUT new_minor integer, OUT new_revision bigint): EXECUTE TO <owner>
-- ON FUNCTION scsync_node_sequences(): EXECUTE TO <owner>
-- ON FUNCTION scsync_node_site(): EXECUTE TO <owner>
-- ON FUNCTION scsync_read_keys_rows(p_exclude jsonb): EXECUTE TO <owner>
-- ON FUNCTION scsync_read_keys_switch(): EXECUTE TO <owner>
-- ON FUNCTION scsync_register_table(tbl regclass, file_column text): EXECUTE TO <owner>
-- ON FUNCTION scsync_replicator_ack(p_lane text, p_seqs bigint[], p_rows jsonb): EXECUTE TO <owner>
-- ON FUNCTION scsync_replicator_apply(p_side text, p_columns jsonb, p_batch jsonb, p_only_ord bigint): EXECUTE TO <owner>
-- ON FUNCTION scsync_replicator_apply_batch(p_lane text, p_site_id integer, p_side text, p_columns jsonb, p_seqs jsonb, p_forget bigint[], p_source_commit_at timestamp with time zone, p_peer_schema_revision text, p_batch jsonb): EXECUTE TO <owner>
-- ON FUNCTION scsync_replicator_check_keys(p_keys jsonb, p_site integer): EXECUTE TO <owner>
-- ON FUNCTION scsync_replicator_claim_lsn(p_lane text, p_site_id integer, p_lsn pg_lsn): EXECUTE TO <owner>
-- ON FUNCTION scsync_replicator_guard(p_site_id integer): EXECUTE TO <owner>
-- ON FUNCTION scsync_replicator_outbox_keys(p_seqs bigint[]): EXECUTE TO <owner>
-- ON FUNCTION scsync_replicator_park(p_lane text, p_table text, p_row_id bigint, p_site_id integer, p_revision bigint, p_reason text, p_initial_s double precision, p_max_s double precision): EXECUTE TO <owner>
-- ON FUNCTION scsync_replicator_read(p_lane text, p_site_id integer, p_limit integer, p_exclude jsonb, p_skip bigint[]): EXECUTE TO <owner>
-- ON FUNCTION scsync_replicator_recover_rows(p_keys jsonb): EXECUTE TO <owner>
-- ON FUNCTION scsync_replicator_stage(p_batch jsonb): EXECUTE TO <owner>
-- ON FUNCTION scsync_resolve_conflict(p_conflict_id bigint, p_keep text, p_by text): EXECUTE TO <owner>
-- ON FUNCTION scsync_scratch_ok(p_name text, p_type regtype): EXECUTE TO <owner>
-- ON FUNCTION scsync_snowflake(): EXECUTE TO <owner>
-- ON FUNCTION scsync_stamp_update(): EXECUTE TO <owner>
-- ON FUNCTION scsync_unregister_table(tbl regclass): EXECUTE TO <owner>
-- ON FUNCTION scsync_wake(): EXECUTE TO <owner>
-- ALTER DEFAULT PRIVILEGES FOR ROLE <owner> ON FUNCTIONS: EXECUTE TO <owner>
