-- Cheaper change capture, revision 0006 (both sides).
--
-- Revision 0005 published API record events with a PL/pgSQL row trigger: a 1,000-row
-- statement paid 1,000 PL/pgSQL calls and 2,000+ single-row INSERTs for them. Here they
-- are written once per statement from its transition tables, by one INSERT ... SELECT.
-- PostgreSQL allows transition tables only on triggers of a single event, hence three
-- triggers per table. The BEFORE row trigger that stamps the revision is no longer even
-- called for the replicator's writes (they keep the revision they carry): its WHEN clause
-- is evaluated by the executor without entering PL/pgSQL.
--
-- The core capture (scsync_capture: history, outbox, hint) stays a row trigger, but its
-- UPDATE part is a trigger of its own whose WHEN clause skips updates that kept the
-- revision (the replicator's synced_revision bookkeeping, blob states), for which the
-- function returned at once anyway.
--
-- Evaluated and not installed: the capture itself as statement triggers over transition
-- tables (measured faster); one of four runs of tests/replicator/test_crash.py with it
-- ended with an update's outbox row acknowledged without its content arriving, which was
-- not explained in the time available.

-- ---------------------------------------------------------------------------
-- API record events (revision 0005's scsync_api_record_event), per statement: the same
-- events with the same payloads, in the same order (row by row in the order the
-- statement wrote them; per row: change, sync, conflict), each still one row of
-- scsync_api_events and one NOTIFY. SECURITY DEFINER for the reason given at
-- scsync_api_publish: the writer's role has no right on scsync_api_events.

-- The NOTIFY payload of one event (NOTIFY stops at 8000 bytes: a reference beyond 7000).
CREATE FUNCTION scsync_api_event_body(p_id bigint, p_type text, p_site int, p_table text,
                                      p_row bigint, p_patient bigint, p_at timestamptz,
                                      p_payload jsonb)
RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN octet_length(b) > 7000
                THEN jsonb_build_object('id', p_id, 'ref', true)::text ELSE b END
      FROM (SELECT jsonb_build_object(
                'id', p_id, 'type', p_type, 'site', p_site, 'table', p_table,
                'record_id', p_row::text, 'patient_id', p_patient::text, 'at', p_at,
                'data', coalesce(p_payload, '{}'::jsonb))::text AS b) x
$$;

CREATE FUNCTION scsync_api_record_events() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    side_name text;
    change_type text;
    n bigint;
BEGIN
    SELECT side INTO side_name FROM scsync_node;
    change_type := CASE WHEN scsync_is_replicating() THEN 'remote.changed'
                        ELSE 'record.changed' END;
    IF TG_OP = 'DELETE' THEN
        WITH ins AS (
            INSERT INTO scsync_api_events (site_id, type, table_name, row_id, patient_id,
                                           payload)
            SELECT o.site_id, change_type, TG_TABLE_NAME, o.id,
                   scsync_api_patient_of(TG_TABLE_NAME, o.j),
                   jsonb_build_object('op', 'D', 'revision', o.revision::text,
                                      'deleted', true, 'origin', side_name)
              FROM (SELECT d.site_id, d.id, d.revision, to_jsonb(d) AS j
                      FROM old_rows d OFFSET 0) o
            RETURNING *)
        SELECT count(pg_notify('scsync_api_events', scsync_api_event_body(
                   i.id, i.type, i.site_id, i.table_name, i.row_id, i.patient_id, i.at,
                   i.payload)))
          INTO n FROM ins i;
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        WITH r AS (
            SELECT x.ord, x.id, x.site_id, x.revision,
                   scsync_api_patient_of(TG_TABLE_NAME, x.j) AS patient,
                   scsync_api_sync_state(x.j, side_name) AS state,
                   true AS content_changed, NULL::text AS old_state,
                   coalesce(x.in_conflict, false) AS conflict_now,
                   jsonb_build_object(
                       'op', 'I', 'revision', x.revision::text,
                       'version', x.version_major || '.' || x.version_minor,
                       'sync_state', scsync_api_sync_state(x.j, side_name),
                       'deleted', x.deleted, 'sync_enabled', x.sync_enabled,
                       'origin', side_name) AS payload
              -- OFFSET 0: j stays a column, so the SQL helpers called with it several
              -- times are inlined (an expression argument would stop that, and a call
              -- that is not inlined costs more than the rest of the row's work).
              FROM (SELECT row_number() OVER () AS ord, to_jsonb(t) AS j, t.*
                      FROM new_rows t OFFSET 0) x),
        ins AS (
            INSERT INTO scsync_api_events (site_id, type, table_name, row_id, patient_id,
                                           payload)
            SELECT r.site_id, k.type, TG_TABLE_NAME, r.id, r.patient, k.payload
              FROM r CROSS JOIN LATERAL (VALUES
                       (1, change_type, r.payload, r.content_changed),
                       (2, 'record.sync',
                        jsonb_build_object('state', r.state, 'revision', r.revision::text),
                        r.content_changed OR r.state IS DISTINCT FROM r.old_state),
                       (3, 'record.conflict', r.payload, r.conflict_now)
                   ) k(kind, type, payload, wanted)
             WHERE k.wanted
             ORDER BY r.ord, k.kind
            RETURNING *)
        SELECT count(pg_notify('scsync_api_events', scsync_api_event_body(
                   i.id, i.type, i.site_id, i.table_name, i.row_id, i.patient_id, i.at,
                   i.payload)))
          INTO n FROM (SELECT * FROM ins ORDER BY ins.id) i;
        RETURN NULL;
    END IF;
    WITH r AS (
        SELECT x.ord, x.id, x.site_id, x.revision,
               scsync_api_patient_of(TG_TABLE_NAME, x.j) AS patient,
               scsync_api_sync_state(x.j, side_name) AS state,
               x.old_id IS NULL OR x.revision IS DISTINCT FROM x.old_revision
                   AS content_changed,
               scsync_api_sync_state(x.old_j, side_name) AS old_state,
               x.in_conflict AND NOT coalesce(x.old_in_conflict, false) AS conflict_now,
               jsonb_build_object(
                   'op', 'U', 'revision', x.revision::text,
                   'version', x.version_major || '.' || x.version_minor,
                   'sync_state', scsync_api_sync_state(x.j, side_name),
                   'deleted', x.deleted, 'sync_enabled', x.sync_enabled,
                   'origin', side_name) AS payload
          FROM (SELECT nn.*, o.id AS old_id, o.revision AS old_revision,
                       o.in_conflict AS old_in_conflict, to_jsonb(o) AS old_j
                  FROM (SELECT row_number() OVER () AS ord, to_jsonb(t) AS j, t.*
                          FROM new_rows t) nn
                  LEFT JOIN old_rows o ON o.id = nn.id
                OFFSET 0) x),  -- j, old_j stay columns (see the INSERT case)
    ins AS (
        INSERT INTO scsync_api_events (site_id, type, table_name, row_id, patient_id,
                                       payload)
        SELECT r.site_id, k.type, TG_TABLE_NAME, r.id, r.patient, k.payload
          FROM r CROSS JOIN LATERAL (VALUES
                   (1, change_type, r.payload, r.content_changed),
                   (2, 'record.sync',
                    jsonb_build_object('state', r.state, 'revision', r.revision::text),
                    r.content_changed OR r.state IS DISTINCT FROM r.old_state),
                   (3, 'record.conflict', r.payload, r.conflict_now)
               ) k(kind, type, payload, wanted)
         WHERE k.wanted
         ORDER BY r.ord, k.kind
        RETURNING *)
    SELECT count(pg_notify('scsync_api_events', scsync_api_event_body(
               i.id, i.type, i.site_id, i.table_name, i.row_id, i.patient_id, i.at,
               i.payload)))
      INTO n FROM (SELECT * FROM ins ORDER BY ins.id) i;
    RETURN NULL;
END
$$;

-- ---------------------------------------------------------------------------
-- Attaching the triggers: one call per table, as before.
CREATE FUNCTION scsync_capture_attach(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS scsync_stamp ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS scsync_capture ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS scsync_capture_upd ON %s', tbl);
    EXECUTE format('CREATE TRIGGER scsync_stamp BEFORE INSERT OR UPDATE ON %s '
                   'FOR EACH ROW WHEN (NOT scsync_is_replicating()) '
                   'EXECUTE FUNCTION scsync_stamp_revision()', tbl);
    EXECUTE format('CREATE TRIGGER scsync_capture AFTER INSERT OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION scsync_capture()', tbl);
    -- A bookkeeping-only update keeps the revision: scsync_capture would return at once.
    EXECUTE format('CREATE TRIGGER scsync_capture_upd AFTER UPDATE ON %s FOR EACH ROW '
                   'WHEN (NEW.revision IS DISTINCT FROM OLD.revision) '
                   'EXECUTE FUNCTION scsync_capture()', tbl);
END
$$;

CREATE OR REPLACE FUNCTION scsync_register_table(tbl regclass, file_column text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    tname text;
BEGIN
    SELECT c.relname INTO tname FROM pg_class c WHERE c.oid = tbl;
    PERFORM scsync_capture_attach(tbl);
    INSERT INTO scsync_synced_tables (table_name, file_column)
    VALUES (tname, file_column);
END
$$;

CREATE OR REPLACE FUNCTION scsync_unregister_table(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS scsync_stamp ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS scsync_capture ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS scsync_capture_upd ON %s', tbl);
    DELETE FROM scsync_synced_tables
     WHERE table_name = (SELECT relname FROM pg_class WHERE oid = tbl);
END
$$;

CREATE OR REPLACE FUNCTION scsync_api_attach(tbl text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS api_event_capture ON %I', tbl);
    EXECUTE format('CREATE TRIGGER api_events_ins AFTER INSERT ON %I '
                   'REFERENCING NEW TABLE AS new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION scsync_api_record_events()', tbl);
    EXECUTE format('CREATE TRIGGER api_events_upd AFTER UPDATE ON %I '
                   'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION scsync_api_record_events()', tbl);
    EXECUTE format('CREATE TRIGGER api_events_del AFTER DELETE ON %I '
                   'REFERENCING OLD TABLE AS old_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION scsync_api_record_events()', tbl);
END
$$;

SELECT scsync_capture_attach(table_name::regclass), scsync_api_attach(table_name)
  FROM scsync_synced_tables ORDER BY table_name;
