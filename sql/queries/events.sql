-- name: append_batch
-- A whole group-commit batch in one statement, as one array of rows (cmp_append in
-- sql/functions/append.sql).
SELECT cmp_append($1::cmp_new_event_v2[]);

-- name: select_row_columns
-- The attributes of the append's row type $1, in order (cmp.store.events fills each).
SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
WHERE attrelid = (SELECT typrelid FROM pg_type WHERE oid = $1::regtype)
  AND attnum > 0 AND NOT attisdropped;

-- name: select_states
-- The batched state read, one statement: the latest choice of each asked (site, subject)
-- pair (`peer` false), and for a pair linked to a user now, every subject linked to that
-- user, itself included, with its latest choice if it has one (`peer` true; the
-- choice's columns null without). Links and choices are read in one snapshot, after
-- every request of the batch arrived.
SELECT k.site_id, k.subject_id AS asked, false AS peer, s.subject_id,
       s.event_id::text AS event_id, s.policy_version, s.action, s.purposes, s.services,
       s.gpc, s.recorded_at, s.rule
FROM unnest($1::text[], $2::text[]) AS k (site_id, subject_id)
JOIN consent_state s ON s.site_id = k.site_id AND s.subject_id = k.subject_id
UNION ALL
SELECT k.site_id, k.subject_id, true, m.subject_id,
       s.event_id::text, s.policy_version, s.action, s.purposes, s.services,
       s.gpc, s.recorded_at, s.rule
FROM unnest($1::text[], $2::text[]) AS k (site_id, subject_id)
JOIN subject_links l ON l.site_id = k.site_id AND l.subject_id = k.subject_id
JOIN subject_links m ON m.site_id = l.site_id AND m.user_digest = l.user_digest
LEFT JOIN consent_state s ON s.site_id = m.site_id AND s.subject_id = m.subject_id;

-- name: partitions_ahead
-- Make the log's monthly partitions through $1 months from now; returns how many.
SELECT cmp_event_partitions_ahead(now(), $1);
