-- name: lock_site_keys
-- Serialise key creation per site (the cap below counts in a later statement, so a
-- concurrent creator's key is seen); NO KEY UPDATE leaves foreign-key checks alone.
SELECT site_id FROM sites WHERE site_id = $1 FOR NO KEY UPDATE;

-- name: insert_key
-- A new API key while the site has fewer than $5 active ones; only the hash of its
-- secret is stored. No row: the site is at its cap.
INSERT INTO api_keys (id, site_id, scope, secret_hash)
SELECT $1, $2, $3, $4
WHERE (SELECT count(*) FROM api_keys WHERE site_id = $2 AND revoked_at IS NULL) < $5
RETURNING id, site_id, scope, created_at, revoked_at, last_used_at;

-- name: select_key_for_auth
-- What authentication needs about a key id.
SELECT id, site_id, scope, secret_hash, revoked_at FROM api_keys WHERE id = $1;

-- name: select_keys
-- A page of a site's keys, without secrets, oldest first: at most $3 after the key $2
-- (NULL: from the first; a key id not of this site: nothing).
SELECT id, site_id, scope, created_at, revoked_at, last_used_at
FROM api_keys
WHERE site_id = $1
  AND ($2::text IS NULL
       OR (created_at, id) > (SELECT created_at, id FROM api_keys WHERE site_id = $1 AND id = $2))
ORDER BY created_at, id
LIMIT $3;

-- name: revoke_key
-- Revoke a key of a site at once; returns the key when it existed.
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE site_id = $1 AND id = $2
RETURNING id;

-- name: select_root_key_exists
-- Whether a root admin key exists at all.
SELECT EXISTS (SELECT 1 FROM api_keys WHERE site_id IS NULL AND revoked_at IS NULL);

-- name: touch_keys
-- Record last use (batched, at most once a minute per key).
UPDATE api_keys SET last_used_at = now() WHERE id = any($1::text[]);

-- name: revoke_other_root_keys
-- The configured root key replaces any earlier one (e.g. a generated one).
UPDATE api_keys SET revoked_at = now()
WHERE site_id IS NULL AND id <> $1 AND revoked_at IS NULL;

-- name: upsert_root_key
-- Install the configured root key, or give an existing root key of that id its secret.
INSERT INTO api_keys (id, site_id, scope, secret_hash)
VALUES ($1, NULL, 'admin', $2)
ON CONFLICT (id) DO UPDATE SET secret_hash = excluded.secret_hash, revoked_at = NULL
WHERE api_keys.site_id IS NULL;

-- name: insert_root_key
-- A generated root key, unless one of that id exists.
INSERT INTO api_keys (id, site_id, scope, secret_hash)
VALUES ($1, NULL, 'admin', $2)
ON CONFLICT (id) DO NOTHING;
