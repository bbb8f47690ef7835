-- API events, revision 0005. The WebSocket /ws of both APIs delivers what lands in
-- scsync_api_events: one row per event, a bigint identity id that grows across every
-- API instance sharing the database, and a NOTIFY on 'scsync_api_events' carrying the
-- event's id only (listeners read the row).

-- Append one event and wake the listeners. Any package may call it (the replicator
-- relaying a status from the other side, lockd, the APIs); it commits with the caller.
-- SECURITY DEFINER, but executable by the owner only since revision 0010 (it trusts
-- p_site): a site's database role reaches it only through the record trigger.
CREATE FUNCTION scsync_api_publish(p_site int, p_type text, p_table text, p_row bigint,
                                   p_patient bigint, p_payload jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    ev_id bigint;
BEGIN
    INSERT INTO scsync_api_events (site_id, type, table_name, row_id, patient_id, payload)
    VALUES (p_site, p_type, p_table, p_row, p_patient, coalesce(p_payload, '{}'::jsonb))
    RETURNING id INTO ev_id;
    -- The event's id only: every session of the database (a site's role too) may
    -- LISTEN, so nothing of the event travels here. Listeners read the row by id and
    -- check its site before anything reaches a client (api/events.py).
    PERFORM pg_notify('scsync_api_events', jsonb_build_object('id', ev_id)::text);
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

-- AFTER INSERT/UPDATE/DELETE on every synced table: record.changed for a direct
-- content change, remote.changed for one applied by the replicator, record.sync when
-- the sync badge moves, record.conflict when the row enters conflict. SECURITY DEFINER
-- (a trigger function, which no one can call directly): a site role's writes publish
-- through it, and scsync_api_publish is the owner's alone (revision 0010).
CREATE FUNCTION scsync_api_record_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    side_name text;
    new_j jsonb;
    old_j jsonb;
    state text;
    old_state text;
    patient bigint;
    content_changed boolean;
    change_type text;
    made_on text;
    payload jsonb;
BEGIN
    SELECT side INTO side_name FROM scsync_node;
    change_type := CASE WHEN scsync_is_replicating() THEN 'remote.changed'
                        ELSE 'record.changed' END;
    -- origin: the side where the change was made (what a client shows), not this one.
    made_on := CASE WHEN NOT scsync_is_replicating() THEN side_name
                    WHEN side_name = 'local' THEN 'cloud' ELSE 'local' END;
    IF TG_OP = 'DELETE' THEN
        old_j := to_jsonb(OLD);
        PERFORM scsync_api_publish(OLD.site_id, change_type, TG_TABLE_NAME, OLD.id,
            scsync_api_patient_of(TG_TABLE_NAME, old_j),
            jsonb_build_object('op', 'D', 'revision', OLD.revision::text, 'deleted', true,
                               'origin', made_on));
        RETURN NULL;
    END IF;
    new_j := to_jsonb(NEW);
    patient := scsync_api_patient_of(TG_TABLE_NAME, new_j);
    state := scsync_api_sync_state(new_j, side_name);
    IF TG_OP = 'INSERT' THEN
        content_changed := true;
        old_state := NULL;
    ELSE
        old_j := to_jsonb(OLD);
        content_changed := NEW.revision IS DISTINCT FROM OLD.revision;
        old_state := scsync_api_sync_state(old_j, side_name);
    END IF;
    payload := jsonb_build_object(
        'op', left(TG_OP, 1), 'revision', NEW.revision::text,
        'version', NEW.version_major || '.' || NEW.version_minor,
        'sync_state', state, 'deleted', NEW.deleted, 'sync_enabled', NEW.sync_enabled,
        'origin', made_on);
    IF content_changed THEN
        PERFORM scsync_api_publish(NEW.site_id, change_type, TG_TABLE_NAME, NEW.id, patient,
                                   payload);
    END IF;
    IF content_changed OR state IS DISTINCT FROM old_state THEN
        PERFORM scsync_api_publish(NEW.site_id, 'record.sync', TG_TABLE_NAME, NEW.id, patient,
                                   jsonb_build_object('state', state,
                                                      'revision', NEW.revision::text));
    END IF;
    IF NEW.in_conflict AND (TG_OP = 'INSERT' OR NOT OLD.in_conflict) THEN
        PERFORM scsync_api_publish(NEW.site_id, 'record.conflict', TG_TABLE_NAME, NEW.id,
                                   patient, payload);
    END IF;
    RETURN NULL;
END
$$;

-- Tables registered by revisions up to this one; a table registered later calls
-- scsync_api_attach itself.
CREATE FUNCTION scsync_api_attach(tbl text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER api_event_capture AFTER INSERT OR UPDATE OR DELETE ON %I '
                   'FOR EACH ROW EXECUTE FUNCTION scsync_api_record_event()', tbl);
END
$$;

SELECT scsync_api_attach(table_name) FROM scsync_synced_tables ORDER BY table_name;
