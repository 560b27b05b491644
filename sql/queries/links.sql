-- name: select_link
-- The user a subject is linked to now (no row: none), and the link record's seq.
SELECT user_digest, seq FROM subject_links WHERE site_id = $1 AND subject_id = $2;

-- name: select_event_digest
-- The body digest an event id was first stored with (no row: a new event id).
SELECT body_digest FROM consent_event_ids WHERE site_id = $1 AND event_id = $2;

-- name: insert_link_record
-- Append a `link` or `unlink` record (and its id) and advance the head: the subject's
-- and the user's digests with their commitments and salts, as a version 2 record.
WITH ev AS (
    INSERT INTO consent_events (site_id, seq, event_id, subject_id, subject_digest, action,
                                received_at, prev_hash, hash, v, subject_digest_sha256,
                                subject_digest_salt, user_digest, user_digest_sha256,
                                user_digest_salt, origin)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 2, $10, $11, $12, $13, $14, $15)
), id AS (
    INSERT INTO consent_event_ids (site_id, event_id, body_digest) VALUES ($1, $3, $16)
)
UPDATE log_heads SET seq = $2, hash = $9 WHERE site_id = $1;

-- name: upsert_link
-- The subject is linked to the user $3 from the record $4 on.
INSERT INTO subject_links (site_id, subject_id, user_digest, seq, linked_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (site_id, subject_id) DO UPDATE
    SET user_digest = excluded.user_digest, seq = excluded.seq, linked_at = excluded.linked_at;

-- name: delete_link
-- The subject is linked to no user (unlink; erasure).
DELETE FROM subject_links WHERE site_id = $1 AND subject_id = $2;

-- name: select_linked_subjects
-- The subjects linked to the user now, in the order they were linked.
SELECT subject_id FROM subject_links WHERE site_id = $1 AND user_digest = $2 ORDER BY seq;

-- name: export_subjects_lines
-- Every record of the subjects whose digests are $2, as export lines, in seq order (an
-- access request by user: the subjects ever linked to it).
SELECT (cmp_record_text(e, true)).*
FROM consent_events e
WHERE site_id = $1 AND subject_digest = any($2::text[])
ORDER BY seq;

-- name: select_user_subject_pairs
-- Every subject ever linked to the user that its link records still name, with its digest.
SELECT DISTINCT subject_id, subject_digest FROM consent_events
WHERE site_id = $1 AND user_digest = $2 AND action = 'link' AND subject_id IS NOT NULL
ORDER BY subject_id;
