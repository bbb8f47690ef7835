-- lockd, cloud only: leases, fencing tokens, lease events, fenced saves.
--
-- Every operation is one function call, so it is one statement, one transaction and
-- one round trip. Times come only from this server's clock_timestamp(). Acquire, renew,
-- release, break and save serialise per record on a transaction-level advisory lock
-- (scsync_lockd_key); session-level advisory locks are never taken (they leak behind
-- PgBouncer and survive a client that died). The primary key of scsync_leases is the
-- "at most one lease per record" constraint; the advisory lock only keeps two acquirers
-- from both seeing "free" and one of them failing on that key.
--
-- SQLSTATEs (class SC, lockd's own): SCL03 record of another site, SCL04 unknown
-- record, SCL05 no lease to break, SCL09 version conflict, SCL10 lease not held,
-- SCL11 lease expired, SCL12 a holder that does not name its site, SCL13 an account
-- (changed only through the API's account endpoints), SCL22 a column that
-- cannot be edited, SCL23 a reference to no record of the same site.

-- 64-bit advisory key of a record, in lockd's own namespace: the top 16 bits are
-- 0x5C10, the low 48 bits a hash of "table/row_id". A hash collision only makes two
-- records share a (microseconds-long) lock; it never merges their leases.
CREATE FUNCTION scsync_lockd_key(p_table text, p_row_id bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 6633906826962452480  -- 0x5C10 << 48
         | (hashtextextended(p_table || '/' || p_row_id::text, 0) & 281474976710655)
$$;

CREATE FUNCTION scsync_lockd_lease_json(l scsync_leases, now_ts timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'lease_id', l.lease_id, 'token', l.token, 'table', l.table_name,
        'row_id', l.row_id, 'site_id', l.site_id, 'holder', l.holder,
        'version_major', l.version_major, 'version_minor', l.version_minor,
        'revision', l.revision, 'saves', l.saves, 'saved_revision', l.saved_revision,
        'ttl_ms', l.ttl_ms, 'acquired_at', l.acquired_at, 'renewed_at', l.renewed_at,
        'expires_at', l.expires_at, 'last_activity_at', l.last_activity_at,
        'idle_warned_at', l.idle_warned_at,
        'expires_in_ms',
        greatest(0, floor(extract(epoch FROM l.expires_at - now_ts) * 1000))::bigint)
$$;

-- A lease event: its row, and a wake-up of the API's event listeners (once per
-- transaction: equal payloads fold; the lease-event trigger's scsync_api_publish does
-- not notify).
CREATE FUNCTION scsync_lockd_emit(p_event text, l scsync_leases,
                                             p_detail jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    s bigint;
    at_ts timestamptz := clock_timestamp();
BEGIN
    INSERT INTO scsync_lease_events (at, event, table_name, row_id, site_id, holder, token,
                                     lease_id, detail)
    VALUES (at_ts, p_event, l.table_name, l.row_id, l.site_id, l.holder, l.token,
            l.lease_id, p_detail)
    RETURNING seq INTO s;
    PERFORM pg_notify('scsync_lease', jsonb_build_object(
        'seq', s, 'event', p_event, 'table', l.table_name, 'row_id', l.row_id,
        'site_id', l.site_id)::text);
    PERFORM pg_notify('scsync_api_events', '');
    RETURN s;
END
$$;

-- The record a lease is about: exists, not deleted, and of the caller's site
-- (p_scope_site NULL = any site, for the vendor's admins and the service itself).
CREATE FUNCTION scsync_lockd_record(p_table text, p_row_id bigint, p_scope_site integer,
                                    OUT site_id integer, OUT version_major integer,
                                    OUT version_minor integer, OUT revision bigint)
LANGUAGE plpgsql AS $$
DECLARE
    is_deleted boolean;
BEGIN
    PERFORM 1 FROM scsync_synced_tables s WHERE s.table_name = p_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown table %', p_table USING ERRCODE = 'SCL04';
    END IF;
    EXECUTE format('SELECT site_id, version_major, version_minor, revision, deleted '
                   'FROM %I WHERE id = $1', p_table)
       INTO site_id, version_major, version_minor, revision, is_deleted USING p_row_id;
    IF site_id IS NULL OR is_deleted THEN
        RAISE EXCEPTION 'record %/% does not exist', p_table, p_row_id USING ERRCODE = 'SCL04';
    END IF;
    IF p_scope_site IS NOT NULL AND site_id <> p_scope_site THEN
        RAISE EXCEPTION 'record %/% belongs to another site', p_table, p_row_id
            USING ERRCODE = 'SCL03';
    END IF;
END
$$;

-- Try to acquire. Returns {"status": "acquired", ...lease} or {"status": "busy", ...}
-- (the busy answer names the holder and when its lease expires, never its lease id).
CREATE FUNCTION scsync_lockd_acquire(p_table text, p_row_id bigint, p_scope_site integer,
                                     p_holder text, p_ttl_ms integer)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    rec record;
    cur scsync_leases;
    now_ts timestamptz;
BEGIN
    IF p_ttl_ms IS NULL OR p_ttl_ms < 100 OR p_ttl_ms > 86400000 THEN
        RAISE EXCEPTION 'ttl_ms must be between 100 and 86400000' USING ERRCODE = '22023';
    END IF;
    -- Usernames are unique only within one site: a holder names its site, or two
    -- clinics' "alice" would own each other's leases.
    IF p_holder IS NULL OR p_holder !~ '^(local|cloud):[0-9]{1,10}/[^[:space:]]{1,120}$' THEN
        RAISE EXCEPTION 'holder must be local:<site>/<user> or cloud:<site>/<user>'
            USING ERRCODE = 'SCL12';
    END IF;
    PERFORM pg_advisory_xact_lock(scsync_lockd_key(p_table, p_row_id));
    SELECT * INTO rec FROM scsync_lockd_record(p_table, p_row_id, p_scope_site);
    now_ts := clock_timestamp();
    SELECT * INTO cur FROM scsync_leases l
     WHERE l.table_name = p_table AND l.row_id = p_row_id FOR UPDATE;
    IF FOUND THEN
        IF cur.expires_at > now_ts THEN
            RETURN jsonb_build_object('status', 'busy')
                || (scsync_lockd_lease_json(cur, now_ts) - 'lease_id');
        END IF;
        -- Expired but not yet swept: it ends now, and says so.
        PERFORM scsync_lockd_emit('lease.expired', cur);
        DELETE FROM scsync_leases l WHERE l.table_name = p_table AND l.row_id = p_row_id;
    END IF;
    INSERT INTO scsync_leases (table_name, row_id, site_id, lease_id, holder, token,
                               version_major, version_minor, revision, acquired_at,
                               renewed_at, expires_at, last_activity_at, ttl_ms)
    VALUES (p_table, p_row_id, rec.site_id, gen_random_uuid(), p_holder,
            nextval('scsync_fencing_token'), rec.version_major, rec.version_minor,
            rec.revision, now_ts, now_ts, now_ts + make_interval(secs => p_ttl_ms / 1000.0),
            now_ts, p_ttl_ms)
    RETURNING * INTO cur;
    PERFORM scsync_lockd_emit('lease.acquired', cur);
    RETURN jsonb_build_object('status', 'acquired') || scsync_lockd_lease_json(cur, now_ts);
END
$$;

-- The caller's live lease, locked for the rest of the transaction; raises SCL10 when the
-- lease id + token (+ owner) do not name a current lease, SCL11 when it has expired.
-- p_owner: the exact holder, or (p_owner_prefix) a prefix such as 'local:3/' for a site.
CREATE FUNCTION scsync_lockd_hold(p_lease_id uuid, p_token bigint, p_owner text,
                                  p_owner_prefix boolean)
RETURNS scsync_leases
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    r bigint;
    cur scsync_leases;
BEGIN
    SELECT l.table_name, l.row_id INTO t, r FROM scsync_leases l WHERE l.lease_id = p_lease_id;
    IF FOUND THEN
        PERFORM pg_advisory_xact_lock(scsync_lockd_key(t, r));
        SELECT * INTO cur FROM scsync_leases l WHERE l.lease_id = p_lease_id FOR UPDATE;
    END IF;
    IF cur.lease_id IS NULL OR cur.token <> p_token
       OR (p_owner IS NOT NULL AND cur.holder <> p_owner
           AND NOT (p_owner_prefix AND starts_with(cur.holder, p_owner))) THEN
        RAISE EXCEPTION 'lease % with token % is not held (released, broken, or expired and '
                        'taken over)', p_lease_id, p_token USING ERRCODE = 'SCL10';
    END IF;
    IF cur.expires_at <= clock_timestamp() THEN
        RAISE EXCEPTION 'lease % expired at %', p_lease_id, cur.expires_at
            USING ERRCODE = 'SCL11';
    END IF;
    RETURN cur;
END
$$;

-- Heartbeat (p_activity false) or user activity (p_activity true: also clears the idle
-- warning). Both extend the lease by its TTL (p_ttl_ms NULL keeps the lease's TTL).
CREATE FUNCTION scsync_lockd_renew(p_lease_id uuid, p_token bigint, p_owner text,
                                   p_owner_prefix boolean, p_ttl_ms integer,
                                   p_activity boolean)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cur scsync_leases;
    now_ts timestamptz;
    ttl integer;
BEGIN
    IF p_ttl_ms IS NOT NULL AND (p_ttl_ms < 100 OR p_ttl_ms > 86400000) THEN
        RAISE EXCEPTION 'ttl_ms must be between 100 and 86400000' USING ERRCODE = '22023';
    END IF;
    cur := scsync_lockd_hold(p_lease_id, p_token, p_owner, p_owner_prefix);
    now_ts := clock_timestamp();
    ttl := coalesce(p_ttl_ms, cur.ttl_ms);
    UPDATE scsync_leases l
       SET renewed_at = now_ts,
           expires_at = now_ts + make_interval(secs => ttl / 1000.0),
           ttl_ms = ttl,
           last_activity_at = CASE WHEN p_activity THEN now_ts ELSE l.last_activity_at END,
           idle_warned_at = CASE WHEN p_activity THEN NULL ELSE l.idle_warned_at END
     WHERE l.lease_id = p_lease_id
    RETURNING * INTO cur;
    RETURN jsonb_build_object('status', 'renewed') || scsync_lockd_lease_json(cur, now_ts);
END
$$;

CREATE FUNCTION scsync_lockd_release(p_lease_id uuid, p_token bigint, p_owner text,
                                     p_owner_prefix boolean)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cur scsync_leases;
    ev bigint;
BEGIN
    cur := scsync_lockd_hold(p_lease_id, p_token, p_owner, p_owner_prefix);
    DELETE FROM scsync_leases l WHERE l.lease_id = p_lease_id;
    ev := scsync_lockd_emit('lease.released', cur);
    RETURN jsonb_build_object('status', 'released', 'lease_id', cur.lease_id,
                              'token', cur.token, 'table', cur.table_name,
                              'row_id', cur.row_id, 'event_seq', ev);
END
$$;

-- Admin force-break: ends the lease whoever holds it and consumes a fencing token, so
-- the broken holder's token is below every token handed out from now on.
CREATE FUNCTION scsync_lockd_break(p_table text, p_row_id bigint, p_scope_site integer,
                                   p_by text, p_reason text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cur scsync_leases;
    bumped bigint;
    ev bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(scsync_lockd_key(p_table, p_row_id));
    PERFORM scsync_lockd_record(p_table, p_row_id, p_scope_site);
    SELECT * INTO cur FROM scsync_leases l
     WHERE l.table_name = p_table AND l.row_id = p_row_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no lease on %/%', p_table, p_row_id USING ERRCODE = 'SCL05';
    END IF;
    bumped := nextval('scsync_fencing_token');
    DELETE FROM scsync_leases l WHERE l.table_name = p_table AND l.row_id = p_row_id;
    ev := scsync_lockd_emit('lease.broken', cur, jsonb_build_object(
        'broken_by', p_by, 'reason', p_reason, 'bumped_token', bumped, 'close', true));
    RETURN jsonb_build_object('status', 'broken', 'table', p_table, 'row_id', p_row_id,
                              'holder', cur.holder, 'token', cur.token,
                              'bumped_token', bumped, 'event_seq', ev);
END
$$;

-- Public view of a record's lease (never its lease id): {"status": "free"} or
-- {"status": "held" | "expired", holder, token, expires_in_ms, ...}.
CREATE FUNCTION scsync_lockd_get(p_table text, p_row_id bigint, p_scope_site integer)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cur scsync_leases;
    now_ts timestamptz;
BEGIN
    PERFORM scsync_lockd_record(p_table, p_row_id, p_scope_site);
    now_ts := clock_timestamp();
    SELECT * INTO cur FROM scsync_leases l WHERE l.table_name = p_table AND l.row_id = p_row_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'free', 'table', p_table, 'row_id', p_row_id);
    END IF;
    RETURN jsonb_build_object('status',
                              CASE WHEN cur.expires_at > now_ts THEN 'held' ELSE 'expired' END)
        || (scsync_lockd_lease_json(cur, now_ts) - 'lease_id');
END
$$;

-- Expire leases past their TTL and apply the idle policy: no user activity for
-- p_idle_warn_ms -> lease.idle_warning; p_idle_close_ms after the warning -> the lease
-- ends with lease.idle_closed (the client is told to close). Safe to run from many
-- processes at once: each row is deleted or warned by exactly one of them.
CREATE FUNCTION scsync_lockd_sweep(p_idle_warn_ms bigint, p_idle_close_ms bigint,
                                   p_event_retention_ms bigint)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cur scsync_leases;
    now_ts timestamptz := clock_timestamp();
    n_expired integer := 0;
    n_warned integer := 0;
    n_closed integer := 0;
    n_pruned integer := 0;
BEGIN
    FOR cur IN DELETE FROM scsync_leases l WHERE l.expires_at <= now_ts RETURNING * LOOP
        PERFORM scsync_lockd_emit('lease.expired', cur);
        n_expired := n_expired + 1;
    END LOOP;
    IF p_idle_warn_ms IS NOT NULL THEN
        FOR cur IN UPDATE scsync_leases l SET idle_warned_at = now_ts
                    WHERE l.idle_warned_at IS NULL
                      AND l.last_activity_at <= now_ts - make_interval(secs => p_idle_warn_ms / 1000.0)
                   RETURNING * LOOP
            PERFORM scsync_lockd_emit('lease.idle_warning', cur,
                                      jsonb_build_object('close_in_ms', p_idle_close_ms));
            n_warned := n_warned + 1;
        END LOOP;
    END IF;
    IF p_idle_close_ms IS NOT NULL THEN
        FOR cur IN DELETE FROM scsync_leases l
                    WHERE l.idle_warned_at IS NOT NULL
                      AND l.idle_warned_at <= now_ts - make_interval(secs => p_idle_close_ms / 1000.0)
                   RETURNING * LOOP
            PERFORM scsync_lockd_emit('lease.idle_closed', cur,
                                      jsonb_build_object('close', true, 'reason', 'idle'));
            n_closed := n_closed + 1;
        END LOOP;
    END IF;
    IF p_event_retention_ms IS NOT NULL THEN
        DELETE FROM scsync_lease_events e
         WHERE e.at < now_ts - make_interval(secs => p_event_retention_ms / 1000.0);
        GET DIAGNOSTICS n_pruned = ROW_COUNT;
    END IF;
    RETURN jsonb_build_object('expired', n_expired, 'idle_warned', n_warned,
                              'idle_closed', n_closed, 'events_pruned', n_pruned);
END
$$;

-- A fenced save on the cloud DB, in one transaction: the lease is live and held by the
-- caller, the record is still at the session's revision (the one at acquisition or of
-- this session's last save), then the changes are applied and the version bumped.
-- p_save_id (chosen by the client, reused on retry) makes a retry after a lost reply
-- return the first outcome instead of applying twice or reporting a conflict.
CREATE FUNCTION scsync_lockd_save(p_lease_id uuid, p_token bigint, p_owner text,
                                  p_owner_prefix boolean, p_expected_revision bigint,
                                  p_changes jsonb, p_save_id uuid, p_protected text[])
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cur scsync_leases;
    session_rev bigint;
    rec record;
    res record;
    now_ts timestamptz;
BEGIN
    cur := scsync_lockd_hold(p_lease_id, p_token, p_owner, p_owner_prefix);
    now_ts := clock_timestamp();
    session_rev := coalesce(cur.saved_revision, cur.revision);
    IF p_save_id IS NOT NULL AND cur.last_save_id = p_save_id THEN
        SELECT * INTO rec FROM scsync_lockd_record(cur.table_name, cur.row_id, NULL);
        RETURN jsonb_build_object('status', 'replayed', 'changed', false,
                                  'version_major', rec.version_major,
                                  'version_minor', rec.version_minor,
                                  'revision', rec.revision, 'token', cur.token);
    END IF;
    IF p_expected_revision IS NOT NULL AND p_expected_revision <> session_rev THEN
        RAISE EXCEPTION 'version conflict: the request is based on revision %, the session is at %',
            p_expected_revision, session_rev USING ERRCODE = 'SCL09';
    END IF;
    EXECUTE format('SELECT revision FROM %I WHERE id = $1 FOR UPDATE', cur.table_name)
       INTO rec USING cur.row_id;
    IF rec.revision IS DISTINCT FROM session_rev THEN
        RAISE EXCEPTION 'version conflict: %/% is at revision %, the edit session started from %',
            cur.table_name, cur.row_id, rec.revision, session_rev USING ERRCODE = 'SCL09';
    END IF;
    SELECT * INTO res FROM scsync_lockd_apply(cur.table_name::regclass, cur.row_id, p_changes,
                                              CASE WHEN cur.saves = 0 THEN 'major'
                                                   ELSE 'minor' END, p_protected);
    UPDATE scsync_leases l
       SET saves = l.saves + CASE WHEN res.changed THEN 1 ELSE 0 END,
           saved_revision = CASE WHEN res.changed THEN res.new_revision
                                 ELSE l.saved_revision END,
           saved_revisions = CASE WHEN res.changed THEN l.saved_revisions || res.new_revision
                                  ELSE l.saved_revisions END,
           last_save_id = p_save_id,
           last_activity_at = now_ts,
           idle_warned_at = NULL
     WHERE l.lease_id = p_lease_id;
    RETURN jsonb_build_object('status', CASE WHEN res.changed THEN 'saved' ELSE 'unchanged' END,
                              'changed', res.changed, 'version_major', res.new_major,
                              'version_minor', res.new_minor, 'revision', res.new_revision,
                              'token', cur.token);
END
$$;

-- Fencing of a save made on a site's LOCAL database (see docs/lockd.md): checks that
-- the lease is live and held by the site, and that the cloud copy of the record has not
-- moved under the session: it is at the revision of acquisition, at any save this
-- session recorded (the replicator brings a site's saves up later, so the copy may
-- still be at an earlier one while the next save begins), or at the local base itself. Answers which version bump the save
-- makes and how long the lease still runs, so the local write can give up in time.
CREATE FUNCTION scsync_lockd_begin_save(p_lease_id uuid, p_token bigint, p_owner text,
                                        p_owner_prefix boolean, p_base_revision bigint)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cur scsync_leases;
    rec record;
    now_ts timestamptz;
BEGIN
    cur := scsync_lockd_hold(p_lease_id, p_token, p_owner, p_owner_prefix);
    now_ts := clock_timestamp();
    EXECUTE format('SELECT revision FROM %I WHERE id = $1', cur.table_name)
       INTO rec USING cur.row_id;
    IF rec.revision IS DISTINCT FROM cur.revision
       AND rec.revision IS DISTINCT FROM p_base_revision
       AND NOT coalesce(rec.revision = ANY (cur.saved_revisions), false)
       AND rec.revision IS DISTINCT FROM cur.saved_revision THEN
        RAISE EXCEPTION 'version conflict: the cloud copy of %/% is at revision %, which this '
                        'edit session did not start from', cur.table_name, cur.row_id,
                        rec.revision USING ERRCODE = 'SCL09';
    END IF;
    UPDATE scsync_leases l SET last_activity_at = now_ts, idle_warned_at = NULL
     WHERE l.lease_id = p_lease_id;
    RETURN jsonb_build_object(
        'status', 'granted', 'lease_id', cur.lease_id, 'token', cur.token,
        'bump', CASE WHEN cur.saves = 0 THEN 'major' ELSE 'minor' END,
        'saves', cur.saves,
        'remaining_ms', greatest(0, floor(extract(epoch FROM cur.expires_at - now_ts) * 1000))::bigint);
END
$$;

CREATE FUNCTION scsync_lockd_end_save(p_lease_id uuid, p_token bigint, p_owner text,
                                      p_owner_prefix boolean, p_new_revision bigint,
                                      p_changed boolean)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cur scsync_leases;
BEGIN
    cur := scsync_lockd_hold(p_lease_id, p_token, p_owner, p_owner_prefix);
    UPDATE scsync_leases l
       SET saves = l.saves + CASE WHEN p_changed THEN 1 ELSE 0 END,
           saved_revision = CASE WHEN p_changed THEN p_new_revision ELSE l.saved_revision END,
           saved_revisions = CASE WHEN p_changed THEN l.saved_revisions || p_new_revision
                                  ELSE l.saved_revisions END,
           last_activity_at = clock_timestamp(), idle_warned_at = NULL
     WHERE l.lease_id = p_lease_id
    RETURNING * INTO cur;
    RETURN jsonb_build_object('status', 'recorded', 'saves', cur.saves,
                              'saved_revision', cur.saved_revision);
END
$$;
