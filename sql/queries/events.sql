-- name: lock_heads
-- Lock the chain heads of the sites in a batch (in site order: no deadlocks between
-- processes) and read where each chain stands.
SELECT site_id, seq, hash FROM log_heads
WHERE site_id = any($1::text[])
ORDER BY site_id
FOR UPDATE;

-- name: select_existing
-- Events of the batch already stored (retries), with the digest that tells a retry
-- from a conflicting reuse of the event id.
SELECT e.site_id, e.event_id::text AS event_id, e.body_digest
FROM consent_events e
JOIN unnest($1::text[], $2::uuid[]) AS k (site_id, event_id)
  ON e.site_id = k.site_id AND e.event_id = k.event_id;

-- name: insert_batch
-- Append a batch to the log, move each subject's state to its newest event, and advance
-- the chain heads — one statement, one round trip.
WITH rows AS (
    SELECT * FROM unnest(
        $1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::integer[],
        $7::text[], $8::text[], $9::jsonb[], $10::jsonb[], $11::boolean[], $12::text[],
        $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
        $18::timestamptz[], $19::timestamptz[], $20::bytea[], $21::text[], $22::text[]
    ) AS r (site_id, seq, event_id, subject_id, subject_digest, policy_version,
            policy_sha256, action, purposes, services, gpc, language,
            source, page_url, origin, user_agent, ip_prefix,
            occurred_at, received_at, body_digest, prev_hash, hash)
), ev AS (
    INSERT INTO consent_events (site_id, seq, event_id, subject_id, subject_digest,
        policy_version, policy_sha256, action, purposes, services, gpc, language, source,
        page_url, origin, user_agent, ip_prefix, occurred_at, received_at, body_digest,
        prev_hash, hash)
    SELECT site_id, seq, event_id, subject_id, subject_digest, policy_version, policy_sha256,
        action, purposes, services, gpc, language, source, page_url, origin, user_agent,
        ip_prefix, occurred_at, received_at, body_digest, prev_hash, hash
    FROM rows
), st AS (
    INSERT INTO consent_state (site_id, subject_id, seq, event_id, policy_version, action,
        purposes, services, gpc, recorded_at)
    SELECT DISTINCT ON (site_id, subject_id)
        site_id, subject_id, seq, event_id, policy_version, action, purposes, services, gpc,
        received_at
    FROM rows
    ORDER BY site_id, subject_id, seq DESC
    ON CONFLICT (site_id, subject_id) DO UPDATE
        SET seq = excluded.seq, event_id = excluded.event_id,
            policy_version = excluded.policy_version, action = excluded.action,
            purposes = excluded.purposes, services = excluded.services, gpc = excluded.gpc,
            recorded_at = excluded.recorded_at
        WHERE consent_state.seq < excluded.seq
)
UPDATE log_heads h SET seq = u.seq, hash = u.hash
FROM unnest($23::text[], $24::bigint[], $25::text[]) AS u (site_id, seq, hash)
WHERE h.site_id = u.site_id;

-- name: select_states
-- Latest event of many (site, subject) pairs at once: the batched state read.
SELECT s.site_id, s.subject_id, s.event_id::text AS event_id, s.policy_version, s.action,
       s.purposes, s.services, s.gpc, s.recorded_at
FROM unnest($1::text[], $2::text[]) AS k (site_id, subject_id)
JOIN consent_state s ON s.site_id = k.site_id AND s.subject_id = k.subject_id;
