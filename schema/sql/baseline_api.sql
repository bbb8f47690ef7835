-- API events (both sides). The WebSocket /ws of both APIs delivers what lands in
-- scsync_api_events: one row per event, a bigint identity id that grows across every
-- API instance sharing the database. Records' events are written by the capture
-- (scsync_capture_rows, baseline_capture.sql), one row per statement, fanned out per
-- record when read (scsync_api_events_after).

-- Append one event. Any package may call it (the replicator relaying a status from the
-- other side, lockd, the APIs); it commits with the caller. No NOTIFY: it is reached
-- from a trigger (lease events); lockd's functions wake the listeners themselves
-- (scsync_lockd_emit, baseline_lockd_cloud.sql). SECURITY DEFINER, executable by the
-- owner only (baseline_privileges.sql; it trusts p_site).
CREATE FUNCTION scsync_api_publish(p_site int, p_type text, p_table text,
                                              p_row bigint, p_patient bigint, p_payload jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    ev_id bigint;
BEGIN
    INSERT INTO scsync_api_events (site_id, type, table_name, row_id, patient_id, payload)
    VALUES (p_site, p_type, p_table, p_row, p_patient, coalesce(p_payload, '{}'::jsonb))
    RETURNING id INTO ev_id;
    RETURN ev_id;
END
$$;

-- The sync badge of a row: conflict, synced, off, uploading or downloading. Seen from
-- the site: a local row not yet pushed is uploading, a cloud row the site has not
-- pulled yet is downloading; a file still on its way (blob_state pending) counts too.
CREATE FUNCTION scsync_api_sync_state(r jsonb, side_name text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN (r->>'in_conflict')::boolean THEN 'conflict'
        WHEN (r->>'synced')::boolean THEN 'synced'
        WHEN NOT (r->>'sync_enabled')::boolean THEN 'off'
        WHEN r->>'blob_state' = 'pending' AND side_name = 'local' THEN 'downloading'
        WHEN r->>'blob_state' = 'pending' THEN 'uploading'
        WHEN side_name = 'local' THEN 'uploading'
        ELSE 'downloading'
    END
$$;

CREATE FUNCTION scsync_api_patient_of(tbl text, r jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN tbl = 'patients' THEN (r->>'id')::bigint
                ELSE (r->>'patient_id')::bigint END
$$;

-- ---------------------------------------------------------------------------
-- The event log as clients see it: every event after p_after, a batch event fanned out
-- per record. A client's event id is (row id << 20) | k: k = 0 for an event row of its
-- own, 1.. for the records of a batch row (3 per record: the change, the sync badge,
-- the conflict), so ids stay unique and increasing and a client that resumes in the
-- middle of a batch gets the rest of it. Late commits below p_after: by the horizon
-- (scsync_api_events.txid, horizon; docs/api.md). The records are read as they are now
-- (they may have moved on since: the newest state is what a client shows); a record of
-- another site is never read.
CREATE FUNCTION scsync_api_events_after(p_after bigint, p_site int, p_limit int)
RETURNS TABLE (id bigint, at timestamptz, site_id int, type text, table_name text,
               row_id bigint, patient_id bigint, payload jsonb)
LANGUAGE plpgsql STABLE AS $$
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
$$;

-- The newest client event id (its whole batch included): a listener's resume point.
CREATE FUNCTION scsync_api_events_newest() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT max(id) FROM scsync_api_events) << 20 | 1048575, 0)
$$;
