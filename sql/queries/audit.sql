-- name: export_lines
-- The log as JSON lines in seq order, in the canonical form (keys sorted, no
-- whitespace: exactly canonical_json of the export row, so verifiers can hash the
-- line's own bytes): cmp_record_text with the link fields, around the two choice maps,
-- which Python puts in canonical form. The time range is written so that the planner
-- skips the months outside it.
SELECT (cmp_record_text(e, true)).*
FROM consent_events e
WHERE site_id = $1
  AND received_at >= coalesce($2::timestamptz, '-infinity')
  AND received_at < coalesce($3::timestamptz, 'infinity')
  AND ($4::integer IS NULL OR policy_version = $4)
  AND ($5::text IS NULL OR subject_digest = $5)
ORDER BY seq;

-- name: export_csv
-- The same records as CSV columns (purposes/services as JSON text), for COPY TO STDOUT,
-- those with seq in ($6, $7]: one statement per window (export_csv_window_end), each
-- under the command timeout. Every text that came from outside goes through
-- cmp_csv_cell, so that no cell starts a spreadsheet formula (the JSONL is exact).
SELECT v, site_id, seq, event_id, subject_digest, policy_version, policy_sha256, action,
    purposes::text AS purposes, services::text AS services, gpc,
    cmp_csv_cell(language) AS language, cmp_csv_cell(source) AS source,
    cmp_csv_cell(page_url) AS page_url, cmp_csv_cell(origin) AS origin, ip_prefix,
    cmp_csv_cell(user_agent) AS user_agent,
    cmp_utc_text(occurred_at) AS occurred_at, cmp_utc_text(received_at) AS received_at,
    prev_hash, hash, cmp_csv_cell(subject_id) AS subject_id,
    -- version 2: each personal value's commitment, and its salt while the value is kept
    encode(subject_digest_sha256, 'hex') AS subject_digest_sha256,
    CASE WHEN subject_digest IS NOT NULL THEN encode(subject_digest_salt, 'hex') END
        AS subject_digest_salt,
    encode(page_url_sha256, 'hex') AS page_url_sha256,
    CASE WHEN page_url IS NOT NULL THEN encode(page_url_salt, 'hex') END AS page_url_salt,
    encode(ip_prefix_sha256, 'hex') AS ip_prefix_sha256,
    CASE WHEN ip_prefix IS NOT NULL THEN encode(ip_prefix_salt, 'hex') END AS ip_prefix_salt,
    encode(user_agent_sha256, 'hex') AS user_agent_sha256,
    CASE WHEN user_agent IS NOT NULL THEN encode(user_agent_salt, 'hex') END AS user_agent_salt,
    -- link and unlink records: the user's digest (docs/linked-users.md)
    user_digest, encode(user_digest_sha256, 'hex') AS user_digest_sha256,
    CASE WHEN user_digest IS NOT NULL THEN encode(user_digest_salt, 'hex') END AS user_digest_salt
FROM consent_events
WHERE site_id = $1
  AND received_at >= coalesce($2::timestamptz, '-infinity')
  AND received_at < coalesce($3::timestamptz, 'infinity')
  AND ($4::integer IS NULL OR policy_version = $4)
  AND ($5::text IS NULL OR subject_digest = $5)
  AND seq > $6::bigint AND seq <= $7::bigint
ORDER BY seq;

-- name: export_csv_window_end
-- The seq of the $7-th record after seq $6 that export_csv writes (NULL when fewer are
-- left): where its next window ends, so that a window holds $7 records however sparse
-- the filter makes them.
SELECT seq FROM consent_events
WHERE site_id = $1
  AND received_at >= coalesce($2::timestamptz, '-infinity')
  AND received_at < coalesce($3::timestamptz, 'infinity')
  AND ($4::integer IS NULL OR policy_version = $4)
  AND ($5::text IS NULL OR subject_digest = $5)
  AND seq > $6::bigint
ORDER BY seq
OFFSET $7::bigint - 1 LIMIT 1;

-- name: count_events
-- How many records an export will hold (for progress).
SELECT count(*) FROM consent_events WHERE site_id = $1;

-- name: select_chain_head
-- Where a site's chain stands.
SELECT seq, hash FROM log_heads WHERE site_id = $1;

-- name: lock_chain_head
-- Serialise a single append (erasure) with the group commit's batches.
SELECT seq, hash FROM log_heads WHERE site_id = $1 FOR UPDATE;

-- name: erase_subject_rows
-- Erasure: the subject id leaves every stored event of the subject, and so do the
-- personal values of version 2 records (their commitments stay); version 1 records keep
-- what they hashed. How many rows changed.
SELECT cmp_erase_subject_rows($1, $2);

-- name: delete_state
-- Erasure: the current state row goes.
DELETE FROM consent_state WHERE site_id = $1 AND subject_id = $2;

-- name: delete_link
-- Erasure: the subject's link to a user goes (the link records lose their values).
DELETE FROM subject_links WHERE site_id = $1 AND subject_id = $2;

-- name: select_erasures
-- The erasure records (version 2) of the subject whose digest is $2, in seq order: found
-- by the commitment each holds to the digest, among the site's erasures.
SELECT (cmp_record_text(e, true)).*
FROM consent_events e
WHERE site_id = $1 AND action = 'erased' AND v = 2
  AND subject_digest_sha256 = sha256(subject_digest_salt || convert_to($2, 'UTF8'))
ORDER BY seq;

-- name: ensure_partition
-- The log's partition for the month of $1 (made when missing: see cmp_event_partition).
SELECT cmp_event_partition($1);

-- name: insert_erased
-- Append the `erased` record (and its id) and advance the head. Version 2 keeps no
-- digest: a commitment to it ($8) and its salt ($9), which only the digest opens.
WITH ev AS (
    INSERT INTO consent_events (site_id, seq, event_id, subject_id, subject_digest, action,
                                received_at, prev_hash, hash, v, subject_digest_sha256,
                                subject_digest_salt)
    VALUES ($1, $2, $3, NULL, $4, 'erased', $5, $6, $7, 2, $8, $9)
), id AS (
    INSERT INTO consent_event_ids (site_id, event_id) VALUES ($1, $3)
)
UPDATE log_heads SET seq = $2, hash = $7 WHERE site_id = $1;

-- name: insert_checkpoint
-- Keep a signed checkpoint (periodic, or the anchor left by a retention purge).
INSERT INTO log_checkpoints (site_id, seq, hash, signed_at, key_id, signature, kind)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT DO NOTHING;

-- name: select_checkpoints
-- A site's stored checkpoints, newest first.
SELECT site_id, seq, hash,
       cmp_utc_text(signed_at) AS signed_at,
       key_id, signature, kind
FROM log_checkpoints WHERE site_id = $1
ORDER BY seq DESC, kind LIMIT $2;

-- name: select_sites_to_checkpoint
-- Sites whose log grew since their last stored periodic checkpoint.
SELECT h.site_id, h.seq, h.hash
FROM log_heads h
WHERE h.seq > coalesce((SELECT max(c.seq) FROM log_checkpoints c
                        WHERE c.site_id = h.site_id AND c.kind = 'periodic'), 0);

-- name: select_sites_due_checkpoint
-- Sites whose log grew and whose newest periodic checkpoint is older than $1 seconds
-- (several replicas each run the timer; the first one in an interval signs).
SELECT h.site_id, h.seq, h.hash
FROM log_heads h
LEFT JOIN LATERAL (
    SELECT c.seq, c.signed_at FROM log_checkpoints c
    WHERE c.site_id = h.site_id AND c.kind = 'periodic'
    ORDER BY c.seq DESC LIMIT 1
) last ON true
WHERE h.seq > coalesce(last.seq, 0)
  AND (last.signed_at IS NULL OR last.signed_at <= now() - make_interval(secs => $1));

-- name: select_purge_cut
-- Per site: the last record (by seq) received before the site's retention began (the
-- new anchor: everything up to its seq goes) and the site's first stored seq (seqs have
-- no gaps, so the difference is how many records go). Not the latest-received record:
-- seq and received_at disagree by a little (several instances commit in turn). The
-- months after the retention boundary are pruned, so this reads at most the boundary
-- month and the records about to go, never the whole log. The cut's hash is read with
-- its seq: a second lookup by (site_id, seq) was planned as a hash join over a scan of
-- the whole log once the log was large (loadtest/README.md, at size).
WITH old AS MATERIALIZED (
    SELECT s.site_id, m.seq, m.hash, m.received_at
    FROM sites s
    CROSS JOIN LATERAL (
        SELECT seq, hash, received_at FROM consent_events
        WHERE site_id = s.site_id
          AND received_at < now() - make_interval(days => s.retention_days)
        ORDER BY seq DESC
        LIMIT 1
    ) m
)
SELECT old.site_id, old.seq, old.hash, old.received_at, f.seq AS first_seq
FROM old
CROSS JOIN LATERAL (
    SELECT seq FROM consent_events WHERE site_id = old.site_id ORDER BY seq LIMIT 1
) f;

-- name: select_event_partitions
-- The log's monthly partitions, oldest first (named consent_events_YYYY_MM).
SELECT c.relname AS name
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'consent_events'::regclass
ORDER BY c.relname;

-- name: partition_expired
-- Is every row of partition $1 at or before its site's purge cut ($2 sites, $3 seqs)?
SELECT cmp_event_partition_expired($1, $2::text[], $3::bigint[]);

-- name: detach_partition
-- Detach partition $1 after deleting its rows' ids; false when the lock did not come
-- within $2.
SELECT cmp_detach_event_partition($1, $2);

-- name: drop_detached_months
-- Drop the months a purge detached (after its commit, or left by a crash); their names.
SELECT name FROM cmp_drop_detached_months() AS name;

-- name: purge_before
-- Retention: delete a site's records up to and including seq $2 received from $3 on
-- (older months are dropped whole), with their ids and the states they proved (the
-- subject is asked again, and no raw subject id outlives the log's retention). The
-- triggers allow it only with cmp.purge = 'on', set for this transaction. Returns the
-- number of records and of states.
SELECT events, states FROM cmp_purge_records($1, $2, $3);

-- name: purge_links
-- Retention: the subjects' links to users whose link record is at or before the cut.
DELETE FROM subject_links WHERE site_id = $1 AND seq <= $2;

-- name: purge_month_states
-- Retention: the states proved by the records of month $1, about to be dropped
-- (per site: site_id, states).
SELECT site_id, states FROM cmp_purge_month_states($1);
