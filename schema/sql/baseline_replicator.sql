-- Replicator functions, both sides (the cloud's guard: baseline_replicator_cloud.sql).
--
-- A lane moves changes from a source database (its scsync_outbox) to a destination
-- database. Gap-free consume-and-delete:
--   1. source, REPEATABLE READ: scsync_replicator_read() returns the committed outbox
--      rows (oldest seq first), coalesced per record, with the record's current content.
--      Rows of still-open transactions are simply not visible yet; nothing is skipped
--      because nothing is remembered but the outbox itself.
--   2. destination, one transaction (scsync.replicating = 'on'): the batch goes to
--      scsync_replicator_apply() as one JSON argument, staged in the session's scratch
--      table (scsync_stage, see scsync_scratch_ok) and applied set-based; the batch's
--      source seqs go into scsync_inbox.
--   3. source, one transaction: scsync_replicator_ack() deletes exactly those seqs from
--      the outbox and does the bookkeeping (synced_revision, conflict marks).
--   4. destination: the inbox entry is forgotten (in the next apply transaction).
-- A crash between 2 and 4 leaves the inbox entry; the lane acknowledges it first on
-- restart, so nothing is lost and nothing is applied twice.

-- ---------------------------------------------------------------------------
-- The lane functions' scratch tables (the read's keys, the apply's stage) are temp tables
-- made once per session and emptied per call: made afresh per call, their catalog rows
-- and the replanning they cause cost a one-row read ~7 ms instead of ~1 (measured). Each
-- is a typed table (CREATE TEMP TABLE ... OF one of these types: its columns are the
-- type's and cannot be added to), kept only if it is exactly what the call would make:
-- a plain heap temp table of the caller's, of that type, with nothing that could run
-- code (no trigger, rule, policy, default, index, check, child table). Anything else,
-- such as one planted with a trigger, is dropped and made again by the call.
CREATE TYPE scsync_read_key AS (
    ord bigint, seqs bigint[], table_name text, row_id bigint, last_op text,
    last_revision bigint, last_base bigint, source_commit_at timestamptz,
    present boolean, off boolean, synced_rev bigint, off_seq bigint, held boolean
);

CREATE TYPE scsync_stage_row AS (
    ord bigint, table_name text, row_id bigint, op text, revision bigint, base bigint,
    row_data jsonb, resolution jsonb, dest_row jsonb, dest_revision bigint, outcome text,
    conflict_id bigint
);

CREATE FUNCTION scsync_scratch_ok(p_name text, p_type regtype) RETURNS boolean
LANGUAGE sql STABLE AS $$
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
$$;

-- ---------------------------------------------------------------------------
-- The wall for records a caller names (p_keys: [{"t": table, "id": row_id}]): each
-- must be of a synced table, and a record that exists must be the acting site's (p_site,
-- NULL: no limit). Raises naming the first record that is not, so the whole request
-- is refused and nothing of it is done.
CREATE FUNCTION scsync_replicator_check_keys(p_keys jsonb, p_site int) RETURNS void
LANGUAGE plpgsql STABLE AS $$
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
$$;

-- After a crash: the records of some outbox seqs (the acting site's own only).
CREATE FUNCTION scsync_replicator_outbox_keys(p_seqs bigint[])
RETURNS TABLE (t text, id bigint)
LANGUAGE plpgsql STABLE AS $$
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
$$;

-- ---------------------------------------------------------------------------
-- Read one batch at the source. p_exclude: columns not to send (those the destination
-- lacks, and side-specific bookkeeping). Tombstones (record gone) carry the revision
-- and synced_revision of the record's last outbox row. p_skip: seqs of a batch being
-- applied right now (read ahead while it is in flight).
--
-- The per-record sync switch is enforced here, by the record's sync_enabled at read
-- time (for a record that is gone: by its last revision in history): while it is off,
-- nothing of the record crosses. The one exception is the switch itself: a destination
-- that does not know yet (its revision, synced_revision, is older than the revision that
-- turned sync off) gets that revision, as it was saved (from history), never the
-- current content. Withheld changes are consumed here (their outbox rows deleted): there
-- is nothing to send for them, and turning sync on again makes a new revision that
-- carries the current content once, as a normal edit.
CREATE FUNCTION scsync_replicator_read(p_lane text, p_site_id int, p_limit int,
                                       p_exclude jsonb, p_skip bigint[])
RETURNS TABLE (ord bigint, seqs bigint[], table_name text, row_id bigint, op text,
               revision bigint, base bigint, row_data text, source_commit_at timestamptz,
               resolution jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    tname text;
    excl text[];
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
                   AND NOT ob.seq = ANY(p_skip)
                   -- A record with a change in the batch still in flight waits whole: its
                   -- later changes need that batch's ack first, or they would be sent with
                   -- a stale base (synced_revision) and make a false conflict.
                   AND NOT EXISTS (
                       SELECT 1 FROM scsync_outbox f
                        WHERE f.seq = ANY(p_skip)
                          AND f.table_name = ob.table_name AND f.row_id = ob.row_id)
                   AND NOT EXISTS (
                       SELECT 1 FROM scsync_dead_letters d
                        WHERE d.lane = p_lane AND d.table_name = ob.table_name
                          AND d.row_id = ob.row_id AND d.next_retry_at > clock_timestamp())
                 ORDER BY ob.seq
                 LIMIT p_limit) o
         GROUP BY o.table_name, o.row_id;

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
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_temp.scsync_read_keys k WHERE k.held);
        DELETE FROM scsync_outbox o USING pg_temp.scsync_read_keys k
         WHERE k.held AND o.seq = ANY(k.seqs);
        DELETE FROM pg_temp.scsync_read_keys k WHERE k.held;
        -- Only withheld changes in this slice of the outbox: look at the next one.
        EXIT WHEN EXISTS (SELECT 1 FROM pg_temp.scsync_read_keys);
    END LOOP;

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
$$;

-- ---------------------------------------------------------------------------
-- The destination's view of a batch, filled afresh by every apply from the batch it is
-- given (p_batch: a JSON array of {ord, table_name, row_id, op, revision, base,
-- row_data, resolution}), in the session's scratch table: one planted under this name
-- (with a trigger, say) is not it and is replaced (scsync_scratch_ok), so no caller's
-- code runs in the apply. Not callable by PUBLIC (baseline_privileges.sql).
CREATE FUNCTION scsync_replicator_stage(p_batch jsonb) RETURNS int
LANGUAGE plpgsql AS $$
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
$$;

-- Apply the staged batch (or the one staged row p_only_ord) at the destination.
-- p_side: this database's side. p_columns: {table: [columns to write]}, the columns
-- both sides have. Outcomes follow the SPEC's apply rule:
--   apply      destination revision = base (absent destination and null base), or a
--              tombstone for what the destination holds
--   duplicate  destination revision = revision, or revision already in history here
--   conflict   anything else: both versions kept in scsync_conflicts, nothing
--              overwritten, the record marked in_conflict.
-- The caller has SET LOCAL scsync.replicating = 'on'.
CREATE FUNCTION scsync_replicator_apply(p_side text, p_columns jsonb, p_batch jsonb,
                                        p_only_ord bigint DEFAULT NULL)
RETURNS TABLE (ord bigint, table_name text, row_id bigint, outcome text, revision bigint,
               conflict jsonb)
LANGUAGE plpgsql AS $$
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
$$;

-- The whole destination step of a batch that applies cleanly, in one round trip:
-- forget acknowledged inbox entries, record this batch's source seqs in the inbox,
-- advance the cursor, apply (p_batch as for scsync_replicator_apply).
CREATE FUNCTION scsync_replicator_apply_batch(p_lane text, p_site_id int, p_side text,
                                              p_columns jsonb, p_seqs jsonb,
                                              p_forget bigint[],
                                              p_source_commit_at timestamptz,
                                              p_peer_schema_revision text, p_batch jsonb)
RETURNS TABLE (ord bigint, table_name text, row_id bigint, outcome text, revision bigint,
               conflict text, batch_id bigint)
LANGUAGE plpgsql AS $$
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
$$;

-- ---------------------------------------------------------------------------
-- Acknowledge a batch at its source, in one transaction (replicating = 'on'):
-- delete exactly the consumed outbox seqs, forget dead letters that went through,
-- move synced_revision forward, mirror conflicts. p_rows: [{"t": table, "id": row_id,
-- "revs": [revisions the destination holds or held], "conflict": {...} | null}].
-- synced_revision moves to the newest of "revs" that this side also held (by this
-- side's history order), even when the record changed since it was sent: the content
-- is untouched and `synced` stays false, but the next push carries the right base.
CREATE FUNCTION scsync_replicator_ack(p_lane text, p_seqs bigint[], p_rows jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
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
$$;

-- After a crash: what the destination holds of some records, in the shape
-- scsync_replicator_ack takes. p_keys: [{"t": table, "id": row_id}].
CREATE FUNCTION scsync_replicator_recover_rows(p_keys jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$
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
$$;

-- Park a record that could not be applied; it is retried after a growing delay and
-- never holds back the records behind it.
CREATE FUNCTION scsync_replicator_park(p_lane text, p_table text, p_row_id bigint,
                                       p_site_id int, p_revision bigint, p_reason text,
                                       p_initial_s double precision, p_max_s double precision)
RETURNS void
LANGUAGE sql AS $$
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
$$;

-- ---------------------------------------------------------------------------
-- Resolve an open conflict on this side (either side will do; the other side follows
-- through replication): the kept version is saved here as a new revision whose
-- synced_revision is the revision the other side holds, so the lane's apply rule sees
-- "destination revision = base" there and fast-forwards it. Returns the new revision
-- (NULL when the kept version is a deletion that needs no new row here).
CREATE FUNCTION scsync_resolve_conflict(p_conflict_id bigint, p_keep text, p_by text)
RETURNS bigint
LANGUAGE plpgsql AS $$
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
$$;
