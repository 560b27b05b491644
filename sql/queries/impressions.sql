-- name: count_impressions
-- A group-commit batch of impressions in one statement (cmp_count_impressions,
-- sql/functions/impressions.sql); returns the (site, id) pairs counted now.
SELECT site_id, impression_id::text AS impression_id
FROM cmp_count_impressions($1::cmp_new_impression[]);

-- name: partitions_ahead
-- Make the daily partitions of today and the $1 days after; returns how many.
SELECT cmp_impression_partitions_ahead($1);

-- name: days_to_roll_up
-- Closed days (before $1) that hold raw impressions and are not rolled up yet.
SELECT to_date(substr(c.relname, 13), 'YYYYMMDD') AS day
FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
WHERE h.inhparent = 'impressions'::regclass
  AND c.relname ~ '^impressions_[0-9]{8}$'
  AND to_date(substr(c.relname, 13), 'YYYYMMDD') < $1
  AND NOT EXISTS (SELECT 1 FROM impression_rollup r
                  WHERE r.day = to_date(substr(c.relname, 13), 'YYYYMMDD'))
ORDER BY 1;

-- name: roll_up_day
-- Count closed day $1 of every site into impression_days, once.
SELECT cmp_roll_up_impressions($1);

-- name: drop_days_before
-- Drop the raw partitions of rolled-up days before $1 ($2: how long to wait for the
-- table's lock); returns the partitions dropped.
SELECT cmp_drop_impression_days($1, $2) AS part;

-- name: set_count_work_mem
-- The memory of this transaction's sorts ($1): the exact count's count(DISTINCT) sorts
-- per level stay in memory instead of spilling to disk.
SELECT set_config('work_mem', $1, true);

-- name: provisional_candidates
-- The sites that may have $2 raw impressions or more on not-rolled-up day $1: those the
-- partition's statistics (autovacuum's analyze) estimate at $2 / 2 or more, scaled to
-- the partition's size now, and those with provisional counts of the day already.
SELECT v.site_id
FROM pg_class c
JOIN pg_stats s ON s.schemaname = c.relnamespace::regnamespace::text
               AND s.tablename = c.relname AND s.attname = 'site_id'
CROSS JOIN LATERAL unnest(s.most_common_vals::text::text[], s.most_common_freqs)
    AS v (site_id, freq)
WHERE c.oid = to_regclass('impressions_' || to_char($1::date, 'YYYYMMDD'))
  AND v.freq * greatest(c.reltuples, 0)
      * greatest(pg_relation_size(c.oid) / 8192.0 / nullif(c.relpages, 0), 1) >= $2 / 2.0
UNION
SELECT p.site_id FROM impression_provisional p WHERE p.day = $1;

-- name: provisional_due
-- Whether site $1's provisional counts of day $2 are to be taken again: the day is not
-- rolled up, and they are missing or older than $3.
SELECT NOT EXISTS (SELECT 1 FROM impression_rollup r WHERE r.day = $2)
   AND coalesce((SELECT min(p.as_of) FROM impression_provisional p
                 WHERE p.site_id = $1 AND p.day = $2) < now() - $3::interval, true);

-- name: delete_provisional
-- Site $1's provisional counts of day $2, before they are taken again.
DELETE FROM impression_provisional WHERE site_id = $1 AND day = $2;

-- name: insert_provisional
-- Count site $1's raw impressions of day $2 as the stats read would, and keep them as of
-- this statement's snapshot, when the site had $3 or more that day; returns the site's
-- total that day.
WITH counted AS (SELECT c.* FROM cmp_impression_counts($1::text, $2::date, $2::date + 1) AS c),
total AS (SELECT coalesce(max(c.impressions), 0) AS n FROM counted c
          WHERE c.rule = '*' AND c.variant = '*'),
kept AS (
    INSERT INTO impression_provisional (site_id, day, rule, variant, surface, impressions,
                                        visitors, as_of)
    SELECT $1, $2, c.rule, c.variant, c.surface, c.impressions, c.visitors,
           statement_timestamp()
    FROM counted c, total t
    WHERE t.n >= $3
    RETURNING 1)
SELECT t.n FROM total t;

-- name: select_impression_days
-- A site's impressions per UTC day in [$2, $3), at the levels of cmp_impression_counts
-- (sql/functions/impressions.sql): the rolled-up days from impression_days, the days not
-- rolled up from their provisional counts (with their as_of) where the site has them,
-- the others counted from the raw rows, one raw day (partition) at a time, so that the
-- raw days kept after their rollup (cmp.store.impressions.RAW_DAYS) are not read at all.
SELECT d.day, d.rule, d.variant, d.surface, d.impressions, d.visitors,
       NULL::timestamptz AS as_of
FROM impression_days d
WHERE d.site_id = $1 AND d.day >= $2 AND d.day < $3
UNION ALL
SELECT p.day, p.rule, p.variant, p.surface, p.impressions, p.visitors, p.as_of
FROM impression_provisional p
WHERE p.site_id = $1 AND p.day >= $2 AND p.day < $3
  AND NOT EXISTS (SELECT 1 FROM impression_rollup r WHERE r.day = p.day)
UNION ALL
SELECT c.day, c.rule, c.variant, c.surface, c.impressions, c.visitors, NULL
FROM (SELECT to_date(substr(p.relname, 13), 'YYYYMMDD') AS day
      FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhrelid
      WHERE h.inhparent = 'impressions'::regclass
        AND p.relname ~ '^impressions_[0-9]{8}$') AS raw
CROSS JOIN LATERAL cmp_impression_counts($1, raw.day, raw.day + 1) AS c
WHERE raw.day >= $2 AND raw.day < $3
  AND NOT EXISTS (SELECT 1 FROM impression_rollup r WHERE r.day = raw.day)
  AND NOT EXISTS (SELECT 1 FROM impression_provisional p
                  WHERE p.site_id = $1 AND p.day = raw.day)
ORDER BY 1, 2, 3, 4;
