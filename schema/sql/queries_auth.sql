-- Named queries of token revocation (schema/revocation.py), run by every service that
-- accepts tokens (both APIs, lockd, the blob endpoints) on psycopg 3: parameters are
-- psycopg placeholders (%(name)s). scsync_token_versions is created by the baseline
-- on both sides (not synced: each side revokes the tokens it issued).

-- name: auth_account_state
SELECT a.id, a.deleted, coalesce(v.disabled, false), coalesce(v.version, 0)
  FROM user_accounts a
  LEFT JOIN scsync_token_versions v ON v.kind = 'account' AND v.key = a.id
 WHERE a.site_id = %(site_id)s AND a.username = %(username)s

-- name: auth_site_state
SELECT coalesce((SELECT disabled FROM scsync_sites WHERE site_id = %(site_id)s), false),
       coalesce((SELECT version FROM scsync_token_versions
                  WHERE kind = 'site' AND key = %(site_id)s), 0)

-- name: auth_account_bump
INSERT INTO scsync_token_versions AS v (kind, key, version, disabled)
VALUES ('account', %(id)s, 1, coalesce(%(disabled)s::boolean, false))
ON CONFLICT (kind, key) DO UPDATE
   SET version = v.version + 1,
       disabled = coalesce(%(disabled)s::boolean, v.disabled),
       changed_at = now()
RETURNING version

-- name: auth_site_disable
WITH site AS (
    UPDATE scsync_sites SET disabled = %(disabled)s WHERE site_id = %(site_id)s
    RETURNING site_id
)
INSERT INTO scsync_token_versions AS v (kind, key, version)
SELECT 'site', site_id, 1 FROM site
ON CONFLICT (kind, key) DO UPDATE SET version = v.version + 1, changed_at = now()
RETURNING version

-- name: auth_site_version
SELECT coalesce((SELECT version FROM scsync_token_versions
                  WHERE kind = 'site' AND key = %(site_id)s), 0) AS v
