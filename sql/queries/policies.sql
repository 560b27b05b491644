-- name: insert_policy
-- Publish the next version of a site's policy; the site row lock serialises publishers.
-- Version 1 must be material: the table's CHECK says so (0001), and nothing here bends it.
WITH locked AS (
    SELECT site_id FROM sites WHERE site_id = $1 FOR UPDATE
), next AS (
    SELECT coalesce(max(version), 0) + 1 AS version
    FROM policy_versions WHERE site_id = (SELECT site_id FROM locked)
)
INSERT INTO policy_versions (site_id, version, material, document, content_sha256)
SELECT (SELECT site_id FROM locked), next.version, $2, $3, $4 FROM next
RETURNING site_id, version, material, document, content_sha256, published_at;

-- name: select_policy
-- One version.
SELECT site_id, version, material, document, content_sha256, published_at
FROM policy_versions WHERE site_id = $1 AND version = $2;

-- name: select_current_policy
-- The newest version of a site's policy (none before the first is published).
SELECT site_id, version, material, document, content_sha256, published_at
FROM policy_versions WHERE site_id = $1 ORDER BY version DESC LIMIT 1;

-- name: select_policies
-- A page of a site's versions, oldest first: at most $3 after version $2.
SELECT site_id, version, material, document, content_sha256, published_at
FROM policy_versions WHERE site_id = $1 AND version > $2 ORDER BY version LIMIT $3;

-- name: select_policy_versions
-- Current and newest material version of a site.
SELECT coalesce(max(version), 0) AS current_version,
       coalesce(max(version) FILTER (WHERE material), 0) AS material_version
FROM policy_versions WHERE site_id = $1;
