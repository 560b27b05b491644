-- name: append_batch
-- A whole group-commit batch in one statement (see sql/schema/0002).
SELECT cmp_append(
    $1::text[], $2::integer[], $3::uuid[], $4::text[], $5::text[], $6::integer[],
    $7::text[], $8::text[], $9::jsonb[], $10::jsonb[], $11::boolean[], $12::text[],
    $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
    $18::timestamptz[], $19::timestamptz[], $20::bytea[], $21::text[], $22::text[]
);

-- name: select_states
-- Latest event of many (site, subject) pairs at once: the batched state read.
SELECT s.site_id, s.subject_id, s.event_id::text AS event_id, s.policy_version, s.action,
       s.purposes, s.services, s.gpc, s.recorded_at
FROM unnest($1::text[], $2::text[]) AS k (site_id, subject_id)
JOIN consent_state s ON s.site_id = k.site_id AND s.subject_id = k.subject_id;
