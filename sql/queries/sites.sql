-- name: upsert_site
-- Create or update a site; `created` tells which. A new site gets its chain head too.
WITH up AS (
    INSERT INTO sites (site_id, name, origins, languages, default_language,
                       consent_validity_days, retention_days, subject_key,
                       controller_name, controller_contact, jurisdiction, withdrawal_url,
                       jurisdictions, fallback, share_across_devices)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
    ON CONFLICT (site_id) DO UPDATE
        SET name = excluded.name, origins = excluded.origins, languages = excluded.languages,
            default_language = excluded.default_language,
            consent_validity_days = excluded.consent_validity_days,
            retention_days = excluded.retention_days,
            controller_name = excluded.controller_name,
            controller_contact = excluded.controller_contact,
            jurisdiction = excluded.jurisdiction, withdrawal_url = excluded.withdrawal_url,
            jurisdictions = excluded.jurisdictions, fallback = excluded.fallback,
            share_across_devices = excluded.share_across_devices, updated_at = now()
    RETURNING site_id, name, origins, languages, default_language, consent_validity_days,
              retention_days, subject_key, stats_link_key, created_at, updated_at, controller_name,
              controller_contact, jurisdiction, withdrawal_url, jurisdictions, fallback,
              share_across_devices, link_secret, (xmax = 0) AS created
), head AS (
    INSERT INTO log_heads (site_id) SELECT site_id FROM up WHERE created
    ON CONFLICT DO NOTHING
)
SELECT * FROM up;

-- name: select_site
-- One site by id.
SELECT site_id, name, origins, languages, default_language, consent_validity_days,
       retention_days, subject_key, stats_link_key, created_at, updated_at, controller_name,
       controller_contact, jurisdiction, withdrawal_url, jurisdictions, fallback,
       share_across_devices, link_secret
FROM sites WHERE site_id = $1;

-- name: select_sites
-- Every site (small: one row per customer website).
SELECT site_id, name, origins, languages, default_language, consent_validity_days,
       retention_days, subject_key, stats_link_key, created_at, updated_at, controller_name,
       controller_contact, jurisdiction, withdrawal_url, jurisdictions, fallback,
       share_across_devices, link_secret
FROM sites ORDER BY site_id;

-- name: select_stats_link_key
-- The key a site's statistics links are signed with (none: no such site).
SELECT stats_link_key FROM sites WHERE site_id = $1;

-- name: update_stats_link_key
-- Replace a site's stats-link key, revoking every link signed with the old one.
UPDATE sites SET stats_link_key = $2 WHERE site_id = $1 RETURNING site_id;

-- name: update_link_secret
-- A new link secret for the site's banner link tokens (the old one's tokens stop working).
UPDATE sites SET link_secret = $2 WHERE site_id = $1 RETURNING site_id;
