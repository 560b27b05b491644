-- name: select_rollup
-- The site's rolled-up days [from_day, through_day), if any.
SELECT from_day, through_day FROM stats_rollup WHERE site_id = $1;

-- name: select_stats
-- Events per action and grants per purpose in each UTC time bucket, plus totals over
-- the range ($1 site, $2 from inclusive, $3 to exclusive, $4 'day'|'week'|'month').
-- Buckets are whole UTC days, so the range is counted per day (cmp_stats_days says what
-- is counted) and the days are summed into buckets: the rolled-up whole days [$7, $8)
-- from stats_days, the rest from the records, [$2, $5) before them and [$6, $3) after
-- ($5 = $6 = $3 when no day is rolled up; cmp/store/stats.py splits the range). A
-- purpose's pair is summed across days, per purpose. The totals row has total = true.
WITH days AS (
    SELECT s.day, s.events, s.accept_all, s.reject_all, s.custom, s.withdraw, s.purposes
    FROM stats_days s
    WHERE s.site_id = $1 AND s.day >= $7 AND s.day < $8
    UNION ALL
    SELECT d.* FROM cmp_stats_days($1, $2, $5) AS d
    UNION ALL
    SELECT d.* FROM cmp_stats_days($1, $6, $3) AS d
), b AS MATERIALIZED (
    SELECT date_trunc($4, day::timestamp AT TIME ZONE 'UTC', 'UTC') AS bucket,
           events, accept_all, reject_all, custom, withdraw, purposes
    FROM days
), per_action AS (
    SELECT bucket, grouping(bucket) = 1 AS total, sum(events)::bigint AS events,
           sum(accept_all)::bigint AS accept_all, sum(reject_all)::bigint AS reject_all,
           sum(custom)::bigint AS custom, sum(withdraw)::bigint AS withdraw
    FROM b
    GROUP BY GROUPING SETS ((bucket), ())
), per_purpose AS (
    SELECT b.bucket, grouping(b.bucket) = 1 AS total, p.key AS purpose,
           sum((p.value ->> 0)::bigint) AS granted, sum((p.value ->> 1)::bigint) AS asked
    FROM b CROSS JOIN LATERAL jsonb_each(b.purposes) AS p (key, value)
    GROUP BY GROUPING SETS ((b.bucket, p.key), (p.key))
), purpose_maps AS (
    SELECT bucket, total,
           jsonb_object_agg(purpose, jsonb_build_array(granted, asked)) AS purposes
    FROM per_purpose
    GROUP BY bucket, total
)
SELECT a.bucket, a.total, coalesce(a.events, 0) AS events,
       coalesce(a.accept_all, 0) AS accept_all, coalesce(a.reject_all, 0) AS reject_all,
       coalesce(a.custom, 0) AS custom, coalesce(a.withdraw, 0) AS withdraw,
       coalesce(m.purposes, '{}'::jsonb) AS purposes
FROM per_action AS a
LEFT JOIN purpose_maps AS m ON m.total = a.total AND m.bucket IS NOT DISTINCT FROM a.bucket
ORDER BY a.total, a.bucket;

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
-- move through_day to $3; returns the number of days with counted records.
WITH counted AS (
    INSERT INTO stats_days (site_id, day, events, accept_all, reject_all, custom, withdraw,
                            purposes)
    SELECT $1, d.day, d.events, d.accept_all, d.reject_all, d.custom, d.withdraw, d.purposes
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
