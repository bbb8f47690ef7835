-- Change capture, a site's own part: the WAL capture (replicator/wal.py; the
-- replicator's capture setting "wal").
--
-- With scsync_node.capture = 'wal' the statement-level triggers (baseline_capture.sql)
-- write only the API events of a site's own changes; the replicator reads the committed
-- changes of the synced tables from a logical replication slot (publication
-- scsync_capture) and spools them here, a batch of source transactions per call,
-- set-based: history rows and outbox rows (the lanes read the outbox as with the
-- triggers). The LSN reached is recorded in the same transaction (scsync_capture_state,
-- one row), so a crash re-reads and skips what is here. The replicator's own writes
-- carry a replication origin scsync_* and are not decoded back.

CREATE PUBLICATION scsync_capture;

-- A registered table joins the publication (scsync_register_table, baseline_capture.sql).
CREATE FUNCTION scsync_capture_publish(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
                    WHERE p.pubname = 'scsync_capture' AND r.prrelid = tbl) THEN
        EXECUTE format('ALTER PUBLICATION scsync_capture ADD TABLE %s', tbl);
    END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- One batch of decoded changes into history and outbox, with the LSN it reaches.
-- p_changes: [{"t": table, "op": "I"|"U"|"D", "id": "<id>", "row": {column: value}}] in
-- commit order; values as JSON strings in their type's text form (raw JSON for json and
-- jsonb); a column absent from "row" (an out-of-line value the update did not touch)
-- keeps the record's current value. A change whose revision history already holds (a
-- bookkeeping-only update, a replay after a crash) makes no outbox row. A deletion
-- carries only the id: its tombstone takes the last revision history holds.
CREATE FUNCTION scsync_capture_spool(p_lsn text, p_changes jsonb) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    tname text;
    seqs bigint[];
    n int := jsonb_array_length(p_changes);
BEGIN
    -- Outbox seqs in commit order, whatever order the tables are written in below,
    -- zipped with the changes (ROWS FROM): a subscript per row of the array, or a join
    -- by ordinal, made a 10,000-change spool quadratic. A change whose revision history
    -- holds is filtered by the unique index, not by joining the history insert's rows.
    seqs := ARRAY(SELECT nextval(pg_get_serial_sequence('scsync_outbox', 'seq'))
                    FROM generate_series(1, n));
    FOR tname IN SELECT DISTINCT x ->> 't' FROM jsonb_array_elements(p_changes) x LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM scsync_synced_tables s
                                   WHERE s.table_name = tname);
        EXECUTE format($q$
            WITH c AS MATERIALIZED (
                SELECT p.seq, p.op, p.r
                  FROM (SELECT x.seq, x.v ->> 'op' AS op,
                               jsonb_populate_record(cur, x.v -> 'row') AS r
                          FROM ROWS FROM (jsonb_array_elements($1), unnest($3)) x(v, seq)
                          LEFT JOIN %1$I cur ON cur.id = (x.v ->> 'id')::bigint
                         WHERE x.v ->> 't' = $2 AND x.v ->> 'op' <> 'D') p
                 WHERE NOT EXISTS (SELECT 1 FROM scsync_history hh
                                    WHERE hh.table_name = $2 AND hh.row_id = (p.r).id
                                      AND hh.revision = (p.r).revision)
            ), h AS (
                INSERT INTO scsync_history (table_name, row_id, site_id, revision,
                                            version_major, version_minor, op, row_data,
                                            origin)
                SELECT $2, (c.r).id, (c.r).site_id, (c.r).revision, (c.r).version_major,
                       (c.r).version_minor, c.op, to_jsonb(c.r), 'direct'
                  FROM c ORDER BY c.seq
                ON CONFLICT (table_name, row_id, revision) DO NOTHING
            )
            INSERT INTO scsync_outbox (seq, table_name, row_id, site_id, op, origin,
                                       revision, synced_revision)
            SELECT c.seq, $2, (c.r).id, (c.r).site_id, c.op, 'local',
                   (c.r).revision, (c.r).synced_revision
              FROM c$q$,
            tname)
        USING p_changes, tname, seqs;
        INSERT INTO scsync_outbox (seq, table_name, row_id, site_id, op, origin,
                                   revision, synced_revision)
            SELECT x.seq, tname, (x.v ->> 'id')::bigint,
                   coalesce(h.site_id, scsync_node_site()), 'D', 'local',
                   coalesce(h.revision, 0), coalesce(h.revision, 0)
              FROM ROWS FROM (jsonb_array_elements(p_changes), unnest(seqs)) x(v, seq)
              LEFT JOIN LATERAL (
                  SELECT hh.revision, hh.site_id FROM scsync_history hh
                   WHERE hh.table_name = tname AND hh.row_id = (x.v ->> 'id')::bigint
                   ORDER BY hh.seq DESC LIMIT 1) h ON true
             WHERE x.v ->> 't' = tname AND x.v ->> 'op' = 'D';
    END LOOP;
    UPDATE scsync_capture_state SET spooled_lsn = p_lsn, updated_at = clock_timestamp();
    RETURN n;
END
$$;

-- A new slot (first start, or one that was lost): the rows not synced that changed
-- since capture began go to the outbox from the tables themselves (the same path as a
-- spooled change); a change also in the new slot's stream is kept once (history).
CREATE FUNCTION scsync_capture_resync(p_slot text, p_lsn text) RETURNS int
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
    UPDATE scsync_capture_state
       SET slot_name = p_slot, spooled_lsn = p_lsn, updated_at = clock_timestamp();
    RETURN n;
END
$$;
