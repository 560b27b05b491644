-- name: select_rollup
-- The site's rolled-up days [from_day, through_day), if any.
SELECT from_day, through_day FROM stats_rollup WHERE site_id = $1;

-- name: select_stats
-- The counts of the site's decisions in [$2, $3) per UTC day, rule and variant
-- (cmp_stats_days says what is counted): the rolled-up whole days [$6, $7) from
-- stats_days, the rest from the records, [$2, $4) before them and [$5, $3) after ($4 =
-- $5 = $3 when no day is rolled up; cmp/store/stats.py splits the range and sums the
-- days into buckets). One row per day, rule and variant, whatever the volume.
SELECT day, rule, variant, events, accept_all, reject_all, custom, withdraw, purposes,
       decisions, decided, interactions, answered, granted, api_imported, gpc_automatic,
       latency
FROM stats_days s
WHERE s.site_id = $1 AND s.day >= $6 AND s.day < $7
UNION ALL
SELECT d.* FROM cmp_stats_days($1, $2, $4) AS d
UNION ALL
SELECT d.* FROM cmp_stats_days($1, $5, $3) AS d
ORDER BY day, rule, variant;

-- name: select_sites_to_roll_up
-- Sites whose rolled-up days stop before $1 (the first day not closed), or that have
-- none yet: where a rollup row is missing, the day of the site's first stored record.
SELECT s.site_id, r.through_day,
       CASE WHEN r.site_id IS NULL THEN
           (SELECT (min(e.received_at) AT TIME ZONE 'UTC')::date
            FROM consent_events e WHERE e.site_id = s.site_id)
       END AS first_day
FROM sites s
LEFT JOIN stats_rollup r ON r.site_id = s.site_id
WHERE r.site_id IS NULL OR r.through_day < $1
ORDER BY s.site_id;

-- name: start_rollup
-- A site's rollup begins empty at day $2 (another process may have begun it already).
INSERT INTO stats_rollup (site_id, from_day, through_day) VALUES ($1, $2, $2)
ON CONFLICT (site_id) DO NOTHING;

-- name: lock_rollup
-- The site's rolled-up days, locked until the transaction ends: one roller per site.
SELECT from_day, through_day FROM stats_rollup WHERE site_id = $1 FOR UPDATE;

-- name: roll_up_days
-- Count the site's days [$2, $3) (closed, after its rolled-up days) into stats_days and
-- move through_day to $3; returns the number of (day, rule, variant) rows counted.
WITH counted AS (
    INSERT INTO stats_days (site_id, day, rule, variant, events, accept_all, reject_all, custom, withdraw, purposes,
                            decisions, decided, interactions, answered, granted, api_imported, gpc_automatic,
                            latency)
    SELECT $1, d.*
    FROM cmp_stats_days($1, $2::date::timestamp AT TIME ZONE 'UTC',
                        $3::date::timestamp AT TIME ZONE 'UTC') AS d
    RETURNING day
), moved AS (
    UPDATE stats_rollup SET through_day = $3 WHERE site_id = $1
)
SELECT count(*) FROM counted;

-- name: forget_days_before
-- After a retention purge: the site's days before $2 are no longer counted from the
-- rollup (their records are gone or partly gone); the records from $2 on are whole.
WITH gone AS (
    DELETE FROM stats_days WHERE site_id = $1 AND day < $2
)
UPDATE stats_rollup
SET from_day = greatest(from_day, $2), through_day = greatest(through_day, $2)
WHERE site_id = $1;
