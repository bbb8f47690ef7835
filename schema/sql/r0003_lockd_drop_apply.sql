-- lockd, revision 0003: undo r0003_lockd_apply.sql.
DROP FUNCTION IF EXISTS scsync_lockd_apply(regclass, bigint, jsonb, text, text[]);
