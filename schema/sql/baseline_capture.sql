-- Change capture (both sides; the baseline revision, schema/migrations/steps.py).
-- Snowflake ids, revisions from a sequence, the update stamp, the statement-level capture
-- into history, outbox and API events, and table registration. No trigger notifies:
-- wake-ups come from the code that commits (scsync_wake). docs/schema.md explains it.
-- Run before the tables (their ids default to scsync_snowflake()); the registration of
-- the synced tables is baseline_register.sql.

-- One write per change on the writer's path. SPEC "Change capture and replication";
-- figures in docs/replicator.md ("Lean capture").
--
-- * Revisions come from a sequence (column default on insert, a row trigger only for
--   the content updates of a writer that is not the replicator), ids from a Snowflake
--   function that takes its lock once per block of ids, not once per id.
-- * The capture is three statement-level triggers per synced table (transition
--   tables): one INSERT ... SELECT each for the history, the outbox and the API event
--   of a whole statement, instead of a PL/pgSQL call, two inserts and two NOTIFYs per
--   row. Applies of the replicator (scsync.replicating) never enter the outbox.
-- * No NOTIFY in any trigger. A NOTIFY serialises every committing transaction that
--   issued one on a cluster-wide lock: the code that commits wakes the listeners (at
--   most once per transaction: scsync_wake), and the listeners poll behind it.
-- * API events of records are one row per statement, table and site ("batch.changed",
--   "batch.sync", "batch.conflict"; their record ids in the payload), fanned out per
--   record when read (scsync_api_events_after): clients still get record.changed,
--   remote.changed, record.sync and record.conflict, each with an id of its own.

-- ---------------------------------------------------------------------------
-- Revisions: k * 4096 + node (the node id in the low 12 bits keeps two nodes' revisions
-- apart), straight from a sequence whose increment is 4096 and whose start is the node.
-- Until a node is set the sequences count down from -1: a negative value means "not
-- configured", and the id function refuses it (revisions alone are never stamped on
-- a row without an id).
CREATE SEQUENCE scsync_revision_seq
    INCREMENT BY -1 MINVALUE -9223372036854775808 MAXVALUE -1 START WITH -1;

-- The Snowflake register: L = ms * 1024 + sequence of the last id reserved.
CREATE SEQUENCE scsync_snowflake_l;

-- The functions below read scsync_node, the node this database generates ids as: one
-- row, written at init (scsync db set-node / the test harness), never by the sync itself.

-- ---------------------------------------------------------------------------
-- Clock used by id generation. The offset setting exists so that tests can
-- simulate a clock step without touching the machine's clock.
CREATE FUNCTION scsync_clock_ms() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT (floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint
         - 1577836800000  -- 2020-01-01T00:00:00Z in ms since the Unix epoch
         + coalesce(nullif(current_setting('scsync.clock_offset_ms', true), ''), '0')::bigint
$$;

-- ---------------------------------------------------------------------------
-- Snowflake id: 41 bits ms since 2020-01-01 | 12 bits node | 10 bits sequence, unique,
-- increasing per session, refused when the clock stepped back (SC002).
--
-- A statement reserves ids in blocks from the register scsync_snowflake_l under a
-- session advisory lock (taken and let go at once, no subtransaction); its block, kept
-- in a session setting (scsync.id_block = 'statement start,next L,last L'), serves the
-- rows that follow in the same statement with no lock at all. Blocks double from 1 up
-- to 256 within a statement, so a one-row statement reserves one id and a bulk insert
-- one lock per 256 rows. A block never crosses a millisecond: at most 1024 ids per
-- millisecond, and a block's ids carry the millisecond they were reserved in.
CREATE FUNCTION scsync_snowflake() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
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
$$;

-- ---------------------------------------------------------------------------
-- True when the current transaction was marked as written by the replicator
-- (SET LOCAL scsync.replicating = 'on'). Such writes carry the revision of the
-- other side and must never re-enter the outbox.
CREATE FUNCTION scsync_is_replicating() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('scsync.replicating', true), '') = 'on'
$$;

-- Columns that are bookkeeping, not content: a change to these alone makes no
-- new revision and no outbox row.
CREATE FUNCTION scsync_bookkeeping_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['revision', 'synced_revision', 'synced', 'last_synced_at', 'updated_at',
                 'blob_state', 'local_path', 'lifecycle', 'in_conflict']
$$;

-- A site's own site, for a legacy application's INSERT that names none (the column
-- default on a site's database; the cloud has no site of its own: NULL, refused by NOT
-- NULL there).
CREATE FUNCTION scsync_node_site() RETURNS int
LANGUAGE sql STABLE AS $$
    SELECT n.site_id FROM scsync_node n WHERE n.side = 'local'
$$;

-- Points the revision sequence at this database's node, above every revision it issued.
CREATE FUNCTION scsync_node_sequences() RETURNS trigger
LANGUAGE plpgsql AS $$
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
$$;

-- ---------------------------------------------------------------------------
-- BEFORE UPDATE of a writer that is not the replicator (trigger WHEN): a content change
-- gets a new revision and updated_at; a bookkeeping-only one keeps its revision.
CREATE FUNCTION scsync_stamp_update() RETURNS trigger
LANGUAGE plpgsql AS $$
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
$$;

-- ---------------------------------------------------------------------------
-- AFTER each statement on a synced table (transition tables scsync_new / scsync_old):
-- the history of every content revision, the outbox row of every change not written by
-- the replicator, one API event per site (and per 10,000 records). TG_ARGV[0] = 'file'
-- on a table with a file (its blob_state moves the sync badge).
--
-- A site whose replicator reads its WAL (scsync_node.capture = 'wal':
-- replicator/wal.py) writes neither history nor outbox rows here for its own changes:
-- the replicator spools them from the WAL, off the writer's path. The events stay
-- (they must not wait for a replicator), and so does the history of what the
-- replicator itself writes (its writes are not decoded back). The column is read
-- through to_jsonb (the function does not depend on it).
CREATE FUNCTION scsync_capture_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
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
$$;

-- ---------------------------------------------------------------------------
-- Makes a table synced: defaults, the update stamp, the three capture triggers.
CREATE FUNCTION scsync_capture_attach(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
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
$$;

-- Makes a table synced: its row in scsync_synced_tables, the capture, and on a site (the
-- publication exists there only: baseline_capture_local.sql) the WAL capture's publication.
CREATE FUNCTION scsync_register_table(tbl regclass, file_column text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO scsync_synced_tables (table_name, file_column)
    SELECT c.relname, file_column FROM pg_class c WHERE c.oid = tbl;
    PERFORM scsync_capture_attach(tbl);
    IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'scsync_capture') THEN
        PERFORM scsync_capture_publish(tbl);
    END IF;
END
$$;

CREATE FUNCTION scsync_unregister_table(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
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
$$;

-- ---------------------------------------------------------------------------
-- Wake-ups: a hint, at most one per transaction and channel (equal payloads fold), sent
-- by the code that commits (the lanes' apply and ack, an API's write, lockd), never by a
-- trigger. Listeners poll behind it.
CREATE FUNCTION scsync_wake() RETURNS void
LANGUAGE sql AS $$
    SELECT pg_notify('scsync_outbox', ''), pg_notify('scsync_api_events', '')
$$;
