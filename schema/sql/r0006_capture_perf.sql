-- Cheaper change capture, revision 0006 (both sides).
--
-- * The BEFORE row trigger that stamps the revision is not even called for the
--   replicator's writes (they keep the revision they carry, and the function returned
--   at once for them): its WHEN clause is evaluated by the executor, not in PL/pgSQL.
-- * The capture (scsync_capture: history, outbox, hint) stays a row trigger, but its
--   UPDATE part is a trigger of its own whose WHEN clause skips updates that kept the
--   revision (bookkeeping: the replicator's synced_revision ack, blob states), for which
--   the function returned at once too. What is captured is unchanged.
--
-- Evaluated and not installed (figures in docs/replicator.md, Benchmark):
-- * the capture as statement triggers over transition tables (history and outbox by one
--   INSERT ... SELECT per statement): about 5% more rows/s in bench/replication.py, but
--   a higher commit->visible p50/p99, since a single-row statement then runs several
--   queries instead of one short row trigger;
-- * the API record events (0005) as statement triggers: no faster than the row trigger
--   (the cost is the event rows and their NOTIFYs, not the PL/pgSQL calls).

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

SELECT scsync_capture_attach(table_name::regclass)
  FROM scsync_synced_tables ORDER BY table_name;
