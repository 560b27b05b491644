-- name: select_stats
-- Events per action and grants per purpose in each UTC time bucket, plus totals over
-- the range ($1 site, $2 from inclusive, $3 to exclusive, $4 'day'|'week'|'month').
-- `erased` records are not consent and are left out. A purpose's `asked` counts the
-- events whose policy version offered it (the purposes map names every purpose of its
-- version), `granted` those of them that granted it. The totals row has total = true.
WITH ev AS MATERIALIZED (
    SELECT date_trunc($4, received_at, 'UTC') AS bucket, action, purposes
    FROM consent_events
    WHERE site_id = $1 AND received_at >= $2 AND received_at < $3 AND action <> 'erased'
), per_action AS (
    SELECT bucket, grouping(bucket) = 1 AS total, count(*) AS events,
           count(*) FILTER (WHERE action = 'accept_all') AS accept_all,
           count(*) FILTER (WHERE action = 'reject_all') AS reject_all,
           count(*) FILTER (WHERE action = 'custom') AS custom,
           count(*) FILTER (WHERE action = 'withdraw') AS withdraw
    FROM ev
    GROUP BY GROUPING SETS ((bucket), ())
), per_purpose AS (
    SELECT ev.bucket, grouping(ev.bucket) = 1 AS total, p.key AS purpose,
           count(*) AS asked, count(*) FILTER (WHERE p.value = 'true'::jsonb) AS granted
    FROM ev CROSS JOIN LATERAL jsonb_each(coalesce(ev.purposes, '{}'::jsonb)) AS p (key, value)
    GROUP BY GROUPING SETS ((ev.bucket, p.key), (p.key))
), purpose_maps AS (
    SELECT bucket, total,
           jsonb_object_agg(purpose, jsonb_build_array(granted, asked)) AS purposes
    FROM per_purpose
    GROUP BY bucket, total
)
SELECT a.bucket, a.total, a.events, a.accept_all, a.reject_all, a.custom, a.withdraw,
       coalesce(m.purposes, '{}'::jsonb) AS purposes
FROM per_action AS a
LEFT JOIN purpose_maps AS m ON m.total = a.total AND m.bucket IS NOT DISTINCT FROM a.bucket
ORDER BY a.total, a.bucket;
