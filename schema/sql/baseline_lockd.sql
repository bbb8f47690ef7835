-- lockd, both sides: apply an edit session's field changes to a
-- synced record and bump its A.B version, in the caller's transaction.
--
-- p_changes is a JSON object {column: value}; every key must be a column of the table
-- and not one of p_protected (lockd.records.NOT_EDITABLE, sent by the caller so that
-- the list lives in one place), else SQLSTATE SCL22 names the column. Values are converted by
-- jsonb_populate_record, so a value of the wrong type raises a data exception and
-- nothing is written. Accounts are never edited here (SCL13), and no table's
-- password_hash or role column either. A reference (foreign key column) must name a
-- record of the same site (SCL23 names the column). p_bump: 'major' for the first save with real changes in a
-- session ((A+1).0), 'minor' for later ones (A.(B+1)). A change that leaves the
-- content as it was writes nothing and leaves the version alone.
CREATE FUNCTION scsync_lockd_apply(tbl regclass, p_row_id bigint, p_changes jsonb, p_bump text,
                                   p_protected text[],
                                   OUT changed boolean, OUT new_major integer,
                                   OUT new_minor integer, OUT new_revision bigint)
LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb;
    new_row jsonb;
    cols text;
    bad text;
    fk_col text;
    ref_tbl regclass;
    ref_site integer;
BEGIN
    IF p_bump NOT IN ('major', 'minor') THEN
        RAISE EXCEPTION 'bump must be major or minor, not %', p_bump USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(p_changes) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'changes must be a JSON object' USING ERRCODE = '22023';
    END IF;
    -- Accounts change only through the API's account endpoints (an admin of the site),
    -- whatever the caller sent as p_protected.
    IF tbl = to_regclass('user_accounts') THEN
        RAISE EXCEPTION '% records are changed through the account endpoints, not by edits',
            tbl USING ERRCODE = 'SCL13';
    END IF;
    SELECT k INTO bad FROM jsonb_object_keys(p_changes) AS k
     WHERE k = ANY (p_protected) OR k IN ('password_hash', 'role')
        OR NOT EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = tbl AND a.attname = k AND a.attnum > 0
                          AND NOT a.attisdropped)
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'column % of % cannot be edited', bad, tbl
            USING ERRCODE = 'SCL22', COLUMN = bad;
    END IF;
    EXECUTE format('SELECT to_jsonb(t), to_jsonb(jsonb_populate_record(t, $2)) '
                   'FROM %s AS t WHERE id = $1 FOR UPDATE', tbl)
       INTO old_row, new_row USING p_row_id, p_changes;
    IF old_row IS NULL THEN
        RAISE EXCEPTION 'record %/% does not exist', tbl, p_row_id USING ERRCODE = 'SCL04';
    END IF;
    -- Ids are global, so a foreign key alone would let a record point at another
    -- clinic's record. A reference must name a record of the edited record's own site;
    -- another site's id gets the same answer as an id that does not exist (SCL23), so
    -- no clinic can probe another's ids.
    FOR fk_col, ref_tbl IN
        SELECT a.attname::text, c.confrelid::regclass
          FROM pg_constraint c
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
         WHERE c.conrelid = tbl AND c.contype = 'f' AND cardinality(c.conkey) = 1
           AND p_changes ? a.attname::text
    LOOP
        CONTINUE WHEN new_row->>fk_col IS NULL;
        ref_site := NULL;
        EXECUTE format('SELECT site_id FROM %s WHERE id = $1', ref_tbl)
           INTO ref_site USING (new_row->>fk_col)::bigint;
        IF ref_site IS DISTINCT FROM (old_row->>'site_id')::integer THEN
            RAISE EXCEPTION '% references no % record of this site', fk_col, ref_tbl
                USING ERRCODE = 'SCL23', COLUMN = fk_col;
        END IF;
    END LOOP;
    IF new_row = old_row THEN
        changed := false;
        new_major := (old_row->>'version_major')::integer;
        new_minor := (old_row->>'version_minor')::integer;
        new_revision := (old_row->>'revision')::bigint;
        RETURN;
    END IF;
    SELECT string_agg(format('%I', k), ', ') INTO cols FROM jsonb_object_keys(p_changes) AS k;
    EXECUTE format(
        'UPDATE %1$s AS t SET (%2$s) = (SELECT %2$s FROM jsonb_populate_record(t, $2)), '
        'version_major = CASE WHEN $3 = ''major'' THEN t.version_major + 1 '
        '                     ELSE t.version_major END, '
        'version_minor = CASE WHEN $3 = ''major'' THEN 0 ELSE t.version_minor + 1 END '
        'WHERE id = $1 RETURNING version_major, version_minor, revision', tbl, cols)
       INTO new_major, new_minor, new_revision USING p_row_id, p_changes, p_bump;
    changed := true;
END
$$;
