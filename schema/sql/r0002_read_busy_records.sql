-- 0002: the outbox read looks up the records of the batches still in flight in one
-- hashed set, instead of scanning p_skip (their seqs) for every outbox row it passes:
-- with two batches of 2,000 in flight a read took 0.3-0.8 s and was most of the push
-- lane's time (bench/replication.py), now ~0.05 s. A record's in-flight change is its
-- own busy record, so the separate "seq not in p_skip" test went too.
-- Downgrade: baseline_replicator.sql's definition (schema.sql.restore_functions).

CREATE OR REPLACE FUNCTION scsync_replicator_read(p_lane text, p_site_id int, p_limit int,
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
