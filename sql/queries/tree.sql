-- name: select_leaves
-- Records after seq $2, in seq order, as canonical JSON of the chain fields (the leaf
-- bytes: cmp_record_text around the two choice maps, which Python puts in canonical
-- form); with the chain link, so the builder checks every leaf against the stored
-- chain hash.
SELECT seq, prev_hash, hash, received_at, (cmp_record_text(e, false)).*
FROM consent_events e
WHERE site_id = $1 AND seq > $2
ORDER BY seq
LIMIT $3;

-- name: select_receipt_record
-- One record for a receipt: the event id and the subject digest must both match, and
-- the subject is not erased; with its export row, which holds the disclosures.
SELECT seq, prev_hash, hash, received_at, (cmp_record_text(e, false)).*,
       cmp_record_text(e, true) AS row_parts
FROM consent_events e
WHERE site_id = $1 AND event_id = $2 AND subject_digest = $3 AND subject_id IS NOT NULL;

-- name: select_sites_to_integrate
-- Sites whose chain is ahead of their tree, or whose tree is ahead of its newest
-- signed checkpoint.
SELECT h.site_id
FROM log_heads h
LEFT JOIN log_trees t ON t.site_id = h.site_id
WHERE h.seq > coalesce(t.size, 0) OR t.size > coalesce(t.head_size, 0);

-- name: select_tree
-- How far a site's tree is built.
SELECT size, root, chain_hash FROM log_trees WHERE site_id = $1;

-- name: upsert_tree
-- Record the tree's new size, root and chain hash at that size.
INSERT INTO log_trees (site_id, size, root, chain_hash) VALUES ($1, $2, $3, $4)
ON CONFLICT (site_id) DO UPDATE
    SET size = excluded.size, root = excluded.root, chain_hash = excluded.chain_hash
    WHERE log_trees.size < excluded.size;

-- name: select_latest_tree_head
-- The newest signed checkpoint of a site.
SELECT head_size AS size, head_root AS root, head_chain_hash AS chain_hash, head_note AS note,
       cmp_utc_text(head_signed_at) AS signed_at
FROM log_trees WHERE site_id = $1 AND head_size IS NOT NULL;

-- name: update_latest_tree_head
-- Replace the newest signed checkpoint (never by an older one).
UPDATE log_trees
SET head_size = $2, head_root = $3, head_chain_hash = $4, head_note = $5, head_signed_at = now()
WHERE site_id = $1 AND coalesce(head_size, 0) < $2;

-- name: select_tree_head_at
-- The signed checkpoint of a site at one size: the newest, or one kept.
(SELECT head_size AS size, head_root AS root, head_chain_hash AS chain_hash,
        head_note AS note,
        cmp_utc_text(head_signed_at) AS signed_at
 FROM log_trees WHERE site_id = $1 AND head_size = $2)
UNION ALL
(SELECT size, root, chain_hash, note,
        cmp_utc_text(signed_at) AS signed_at
 FROM log_tree_heads WHERE site_id = $1 AND size = $2)
LIMIT 1;

-- name: select_last_kept_at
-- When the newest kept checkpoint of a site was signed.
SELECT signed_at FROM log_tree_heads WHERE site_id = $1 ORDER BY size DESC LIMIT 1;

-- name: insert_tree_head
-- Keep a signed tree head; a concurrent signer of the same size keeps the first.
INSERT INTO log_tree_heads (site_id, size, root, chain_hash, note)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (site_id, size) DO NOTHING;

-- name: select_tiles
-- Tiles by (level, idx).
SELECT t.level, t.idx, t.hashes
FROM log_tiles t
JOIN unnest($2::smallint[], $3::bigint[]) AS k (level, idx)
  ON t.level = k.level AND t.idx = k.idx
WHERE t.site_id = $1;

-- name: upsert_tiles
-- Write grown or new tiles (the grow-only trigger refuses any other change).
INSERT INTO log_tiles (site_id, level, idx, hashes)
SELECT $1, k.level, k.idx, k.hashes
FROM unnest($2::smallint[], $3::bigint[], $4::bytea[]) AS k (level, idx, hashes)
ON CONFLICT (site_id, level, idx) DO UPDATE SET hashes = excluded.hashes;
