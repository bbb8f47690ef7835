-- Back to revision 0005's lease-event trigger (its body, restated on purpose: a
-- downgrade must not depend on the text of another revision's file).
CREATE OR REPLACE FUNCTION scsync_api_lease_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ev text;
    by_side text;
    rec jsonb;
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
    BEGIN
        EXECUTE format('SELECT to_jsonb(t) FROM %I t WHERE id = $1', NEW.table_name)
           INTO rec USING NEW.row_id;
    EXCEPTION WHEN undefined_table THEN
        rec := NULL;
    END;
    PERFORM scsync_api_publish(
        NEW.site_id, ev, NEW.table_name, NEW.row_id,
        scsync_api_patient_of(NEW.table_name, coalesce(rec, '{}'::jsonb)),
        jsonb_build_object('by', by_side, 'holder', NEW.holder, 'lease_event', NEW.event)
            || (coalesce(NEW.detail, '{}'::jsonb) - 'lease_id'));
    RETURN NULL;
END
$$;
