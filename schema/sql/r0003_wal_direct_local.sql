-- 0003, a site's own part: no spool. The replicator turns the changes it decodes from
-- the site's slot into push batches (scsync_capture_read) and the cloud stores the
-- source LSN with the apply (r0003_wal_direct.sql); the slot is the only position the
-- site keeps, so the spool (scsync_capture_spool) and its position (spooled_lsn) go.
-- The outbox of a WAL site holds only what waits outside the stream: a resync's rows
-- after a lost slot, records parked for a retry, rows an earlier version left.
-- Downgrade: spooled_lsn comes back empty (the slot's confirmed position is where the
-- stream goes on), the spool and the resync back to baseline_capture_local.sql's
-- definitions (schema.sql.restore_functions).

DROP FUNCTION scsync_capture_spool(text, jsonb);
ALTER TABLE scsync_capture_state DROP COLUMN spooled_lsn;

-- A new slot (first start, or one that was lost): the rows not synced that changed
-- since capture began go to the outbox from the tables themselves (the push lane reads
-- it before the stream); a change also in the new slot's stream crosses once more and
-- the cloud answers it as a duplicate.
CREATE OR REPLACE FUNCTION scsync_capture_resync(p_slot text, p_lsn text) RETURNS int
LANGUAGE plpgsql AS $$
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
$$;

-- ---------------------------------------------------------------------------
-- Wait until every transaction of p_xids (32-bit ids, as the WAL's BEGIN carries them)
-- is visible to a new snapshot. The walsender may send a transaction as soon as its
-- commit record is flushed, and the committing backend leaves the shared state that
-- snapshots read (ProcArrayEndTransaction) only a moment later: on a busy machine,
-- long enough for the read after it to see the record as it was before the change.
-- Sent as it was, that is the revision the cloud holds already (a duplicate), and the
-- change is lost once the slot moves past it. Each test below takes a new snapshot (a
-- volatile function in READ COMMITTED); gives up after p_wait_s with 55000.
CREATE FUNCTION scsync_capture_wait_visible(p_xids bigint[], p_wait_s double precision)
RETURNS void
LANGUAGE plpgsql AS $$
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
$$;

-- ---------------------------------------------------------------------------
-- Decoded changes as one push batch, the outbox read's rows and rules (the sync switch,
-- a resolution's note, tombstones) over keys taken from the WAL instead of the outbox.
-- p_changes: [{"t": table, "op": "I"|"U"|"D", "id": "<id>", "at": commit time,
-- "row": {column: value}}] in commit order; values as JSON strings in their type's text
-- form (raw JSON for json and jsonb); a column absent from "row" (an out-of-line value
-- the update did not touch) is the record's current value.
--
-- Per change, set-based: its revision into the site's history (one the history holds
-- already, such as an API save's own row, is left alone). Coalesced per record: the
-- record's current content crosses (as from the outbox), in the order of its first
-- change. Skipped: a change whose revision is the synced one (a bookkeeping-only
-- update: the cloud holds it). A deletion carries only the id: its tombstone takes
-- the last revision history holds. A record parked for a retry (a dead letter not yet
-- due) is not sent: its change goes to the outbox, where the retry finds it. So is a
-- record of p_busy ([{"t", "id"}]: the batch still in flight, whose apply this read
-- runs beside): sent now, it would carry the base (synced_revision) from before that
-- batch's ack and make a false conflict; the outbox read finds it after the ack.
-- p_xids: the decoded transactions' ids, waited for first (scsync_capture_wait_visible).
CREATE FUNCTION scsync_capture_read(p_lane text, p_site_id int, p_changes jsonb,
                                    p_exclude jsonb, p_busy jsonb, p_xids bigint[])
RETURNS TABLE (ord bigint, seqs bigint[], table_name text, row_id bigint, op text,
               revision bigint, base bigint, row_data text, source_commit_at timestamptz,
               resolution jsonb)
LANGUAGE plpgsql AS $$
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
$$;

-- A record of a WAL batch parked by its acknowledgement: to the outbox, where the
-- retry finds it (the stream moves on past it).
CREATE FUNCTION scsync_capture_requeue(p_site_id int, p_keys jsonb) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO scsync_outbox (table_name, row_id, site_id, op, origin, revision,
                               synced_revision)
    SELECT k ->> 't', (k ->> 'id')::bigint, p_site_id, 'U', 'local',
           (k ->> 'revision')::bigint, (k ->> 'revision')::bigint
      FROM jsonb_array_elements(p_keys) k
$$;
