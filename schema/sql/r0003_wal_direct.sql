-- 0003 (both sides): the site's WAL goes straight to the cloud (replicator/wal.py).
--
-- The destination keeps the source's position: scsync_replication_cursor.source_lsn,
-- the end LSN of the last source transaction a WAL batch carried, written by
-- scsync_replicator_claim_lsn in the apply's own transaction. pg_lsn rather than text
-- (compares as a position, not as a string: 'F/0' > '10/0' as text) or bigint (reads
-- as the LSN that the slot, the logs and pg_replication_slots show).
--
-- The outbox read's last two steps (the per-record sync switch, the rows returned) are
-- functions of their own, over the session's scratch keys, so that the WAL read
-- (scsync_capture_read, r0003_wal_direct_local.sql) runs the same rules on keys decoded
-- from the WAL instead of taken from the outbox.
-- Downgrade: the column and the new functions dropped; scsync_replicator_read back to
-- r0002_read_busy_records.sql's definition (schema.sql.restore_functions).

ALTER TABLE scsync_replication_cursor ADD COLUMN source_lsn pg_lsn;

-- Claim a batch's end LSN for (lane, site): true when it is past the stored one (now
-- stored, in the caller's transaction: the apply's), false for a replay (a crash after
-- the apply committed and before the source heard of it), which then applies nothing.
-- The cursor row is locked either way (ON CONFLICT takes the row's lock), so two
-- applies of one lane cannot both claim.
CREATE FUNCTION scsync_replicator_claim_lsn(p_lane text, p_site_id int, p_lsn pg_lsn)
RETURNS boolean
LANGUAGE plpgsql AS $$
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
$$;

-- The read's sync switch over the session's scratch keys (pg_temp.scsync_read_keys):
-- present, off, off_seq and held per key (the rules: scsync_replicator_read's comment).
CREATE FUNCTION scsync_read_keys_switch() RETURNS void
LANGUAGE plpgsql AS $$
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
$$;

-- The batch rows of the session's scratch keys (those not held back).
CREATE FUNCTION scsync_read_keys_rows(p_exclude jsonb)
RETURNS TABLE (ord bigint, seqs bigint[], table_name text, row_id bigint, op text,
               revision bigint, base bigint, row_data text, source_commit_at timestamptz,
               resolution jsonb)
LANGUAGE plpgsql AS $$
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
$$;

CREATE OR REPLACE FUNCTION scsync_replicator_read(p_lane text, p_site_id int, p_limit int,
                                       p_exclude jsonb, p_skip bigint[])
RETURNS TABLE (ord bigint, seqs bigint[], table_name text, row_id bigint, op text,
               revision bigint, base bigint, row_data text, source_commit_at timestamptz,
               resolution jsonb)
LANGUAGE plpgsql AS $$
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
$$;

-- ---------------------------------------------------------------------------
-- An API save's own history row, in the save's transaction (SPEC, "History": saves
-- through the APIs write their history row explicitly, on the side that saved). On a
-- WAL site the triggers write none (the push lane's read of the WAL writes the history
-- of legacy writes, and leaves a revision the history holds); where the triggers wrote
-- it already (the triggers capture, the cloud), it is kept as it is.
CREATE FUNCTION scsync_history_save(tbl regclass, p_row_id bigint, p_op text) RETURNS void
LANGUAGE plpgsql AS $$
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
$$;
