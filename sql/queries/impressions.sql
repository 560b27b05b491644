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

-- name: select_impression_days
-- A site's impressions per UTC day in [$2, $3), at the levels of cmp_impression_counts
-- (sql/functions/impressions.sql): the rolled-up days from impression_days, the others
-- counted from the raw rows, one raw day (partition) at a time, so that the raw days
-- kept after their rollup (cmp.store.impressions.RAW_DAYS) are not read at all.
SELECT d.day, d.rule, d.variant, d.surface, d.impressions, d.visitors
FROM impression_days d
WHERE d.site_id = $1 AND d.day >= $2 AND d.day < $3
UNION ALL
SELECT c.day, c.rule, c.variant, c.surface, c.impressions, c.visitors
FROM (SELECT to_date(substr(p.relname, 13), 'YYYYMMDD') AS day
      FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhrelid
      WHERE h.inhparent = 'impressions'::regclass
        AND p.relname ~ '^impressions_[0-9]{8}$') AS raw
CROSS JOIN LATERAL cmp_impression_counts($1, raw.day, raw.day + 1) AS c
WHERE raw.day >= $2 AND raw.day < $3
  AND NOT EXISTS (SELECT 1 FROM impression_rollup r WHERE r.day = raw.day)
ORDER BY 1, 2, 3, 4;
