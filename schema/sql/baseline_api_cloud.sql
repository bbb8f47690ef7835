-- Cloud only: lockd's lease events become API events in the same transaction, so every
-- lease change is published exactly once, whichever process made it (the cloud API's own
-- sessions, a site's lockd client, the sweeper) and however many API instances run. The
-- lease id is left out: it must not reach other clients.
--
-- No subtransaction and no copy of the record: a patient is its own patient; a table
-- with a patient_id column is asked for that column alone; any other table (or one that
-- is gone) has none. (Reading the whole record as jsonb in a BEGIN ... EXCEPTION block
-- cost 854 instead of 715 us per acquire + release, docs/lockd.md.)
CREATE FUNCTION scsync_api_lease_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ev text;
    by_side text;
    patient bigint;
BEGIN
    ev := CASE NEW.event
        WHEN 'lease.acquired' THEN 'record.editing'
        WHEN 'lease.released' THEN 'record.released'
        WHEN 'lease.idle_warning' THEN 'lease.idle_warning'
        WHEN 'lease.expired' THEN 'lease.expired'
        WHEN 'lease.broken' THEN 'lease.expired'
        WHEN 'lease.idle_closed' THEN 'lease.expired'
        ELSE NULL END;
    IF ev IS NULL THEN
        RETURN NULL;
    END IF;
    by_side := CASE WHEN NEW.holder LIKE 'local:%' THEN 'local'
                    WHEN NEW.holder LIKE 'cloud:%' THEN 'cloud' END;
    IF NEW.table_name = 'patients' THEN
        patient := NEW.row_id;
    ELSIF EXISTS (SELECT 1 FROM pg_attribute a
                   WHERE a.attrelid = to_regclass(quote_ident(NEW.table_name))
                     AND a.attname = 'patient_id' AND NOT a.attisdropped) THEN
        EXECUTE format('SELECT patient_id FROM %I WHERE id = $1', NEW.table_name)
           INTO patient USING NEW.row_id;
    END IF;
    PERFORM scsync_api_publish(
        NEW.site_id, ev, NEW.table_name, NEW.row_id, patient,
        jsonb_build_object('by', by_side, 'holder', NEW.holder, 'lease_event', NEW.event)
            || (coalesce(NEW.detail, '{}'::jsonb) - 'lease_id'));
    RETURN NULL;
END
$$;

CREATE TRIGGER api_lease_event AFTER INSERT ON scsync_lease_events
    FOR EACH ROW EXECUTE FUNCTION scsync_api_lease_event();
