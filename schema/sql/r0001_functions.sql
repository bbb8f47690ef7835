-- scsync core functions, revision 0001. Installed by migration 0001 on both sides.
-- A later change to any function goes into a new file and a new migration
-- (alembic "replaceable objects"), so an old migration always installs what it did.

-- The node this database generates ids as. Exactly one row, written at init
-- (scsync db set-node / the test harness), never by the sync itself.
-- (table created by the migration; functions below read it)

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
-- Snowflake id: 41 bits ms since 2020-01-01 | 12 bits node | 10 bits sequence.
--
-- State lives in the sequence scsync_snowflake_state as L = ms * 1024 + seq of the
-- last id issued. Sequences are non-transactional registers, so the state survives
-- rollbacks and is shared by all backends. Read-modify-write of L must be atomic;
-- it runs under a transaction-level advisory lock taken inside a subtransaction that
-- is always rolled back at the end of the block: the rollback releases the lock at
-- once (it is held for microseconds, never until commit, and never at session level),
-- while the setval survives because sequences ignore rollback.
CREATE FUNCTION scsync_snowflake() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    node int;
    last_l bigint;
    now_ms bigint;
    next_l bigint;
BEGIN
    SELECT node_id INTO node FROM scsync_node;
    IF node IS NULL THEN
        RAISE EXCEPTION 'scsync node id is not configured (run: scsync db set-node)'
            USING ERRCODE = 'SC001';
    END IF;
    BEGIN
        PERFORM pg_advisory_xact_lock(7308901234567890001);
        SELECT last_value INTO last_l FROM scsync_snowflake_state;
        LOOP
            now_ms := scsync_clock_ms();
            IF now_ms < (last_l >> 10) THEN
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
            -- 1024 ids in this millisecond already: wait for the next one, as
            -- Snowflake does, rather than run ahead of the clock.
            PERFORM pg_sleep(0.0002);
        END LOOP;
        PERFORM setval('scsync_snowflake_state', next_l);
        RAISE EXCEPTION USING ERRCODE = 'SC999';  -- leave the block: releases the lock
    EXCEPTION WHEN SQLSTATE 'SC999' THEN  -- exactly this code: 'SC000' would match the whole SC class
        NULL;
    END;
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

-- ---------------------------------------------------------------------------
-- BEFORE INSERT OR UPDATE: stamp revision and updated_at on content changes; an insert
-- without a site gets this database's site (a site's local database only).
CREATE FUNCTION scsync_stamp_revision() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF scsync_is_replicating() THEN
        RETURN NEW;  -- keeps the revision it carries from the other side
    END IF;
    IF TG_OP = 'INSERT' THEN
        NEW.revision := scsync_snowflake();
        NEW.updated_at := clock_timestamp();
        -- A legacy application's plain INSERT names no site: on a site's database it is
        -- that site's (scsync db set-node --site-id). The cloud has no site of its own:
        -- there the NOT NULL constraint still refuses it.
        IF NEW.site_id IS NULL THEN
            NEW.site_id := (SELECT n.site_id FROM scsync_node n);
        END IF;
        RETURN NEW;
    END IF;
    IF (to_jsonb(NEW) - scsync_bookkeeping_columns())
       IS DISTINCT FROM (to_jsonb(OLD) - scsync_bookkeeping_columns()) THEN
        NEW.revision := scsync_snowflake();
        NEW.updated_at := clock_timestamp();
    ELSE
        -- Bookkeeping only: the content identity must not move.
        NEW.revision := OLD.revision;
    END IF;
    RETURN NEW;
END
$$;

-- AFTER INSERT OR UPDATE OR DELETE: outbox row, history row, wake-up hint.
CREATE FUNCTION scsync_capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    origin_side text;
    op_code text;
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
        op_code := 'D';
    ELSE
        r := NEW;
        op_code := CASE TG_OP WHEN 'INSERT' THEN 'I' ELSE 'U' END;
        IF TG_OP = 'UPDATE' AND NEW.revision IS NOT DISTINCT FROM OLD.revision THEN
            RETURN NULL;  -- bookkeeping-only update
        END IF;
        -- Every content revision is kept, on both sides, for history and rollback.
        INSERT INTO scsync_history (table_name, row_id, site_id, revision,
                                    version_major, version_minor, op, row_data, origin)
        VALUES (TG_TABLE_NAME, r.id, r.site_id, r.revision, r.version_major,
                r.version_minor, op_code, to_jsonb(r),
                CASE WHEN scsync_is_replicating() THEN 'replicated' ELSE 'direct' END)
        ON CONFLICT (table_name, row_id, revision) DO NOTHING;
    END IF;
    IF scsync_is_replicating() THEN
        RETURN NULL;
    END IF;
    SELECT side INTO origin_side FROM scsync_node;
    INSERT INTO scsync_outbox (table_name, row_id, site_id, op, origin,
                               revision, synced_revision)
    VALUES (TG_TABLE_NAME, r.id, r.site_id, op_code, coalesce(origin_side, 'unknown'),
            r.revision, r.synced_revision);
    -- Only a hint: the outbox is the truth. Equal payloads in one transaction are
    -- folded into one notification by PostgreSQL.
    PERFORM pg_notify('scsync_outbox', r.site_id::text);
    RETURN NULL;
END
$$;

-- ---------------------------------------------------------------------------
-- Makes a table synced: one call, no per-table replication code.
CREATE FUNCTION scsync_register_table(tbl regclass, file_column text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    tname text;
BEGIN
    SELECT c.relname INTO tname FROM pg_class c WHERE c.oid = tbl;
    EXECUTE format('CREATE TRIGGER scsync_stamp BEFORE INSERT OR UPDATE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION scsync_stamp_revision()', tbl);
    EXECUTE format('CREATE TRIGGER scsync_capture AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION scsync_capture()', tbl);
    INSERT INTO scsync_synced_tables (table_name, file_column)
    VALUES (tname, file_column);
END
$$;

CREATE FUNCTION scsync_unregister_table(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS scsync_stamp ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS scsync_capture ON %s', tbl);
    DELETE FROM scsync_synced_tables
     WHERE table_name = (SELECT relname FROM pg_class WHERE oid = tbl);
END
$$;
