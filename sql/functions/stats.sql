-- Consent statistics by UTC day (issue 12, item 4).
--
-- stats_days holds the days a site has rolled up and stats_rollup says which those are
-- (0010_create_stats_days.sql; cmp/store/stats.py rolls up closed days only); the days
-- outside are counted from the records, by this same function, so both agree.

-- The one definition of the counting: a site's records in [p_from, p_to) per UTC day.
-- `erased` records are not consent and are left out. A purpose's `asked` counts the
-- events whose policy version offered it (the purposes map names every purpose of its
-- version), `granted` those of them that granted it: purposes = {purpose: [granted,
-- asked]}. LANGUAGE sql, STABLE and a single query, so the planner inlines it into the
-- caller and reads the range by the (site_id, received_at) index of its months only.
-- History: 0010.
CREATE OR REPLACE FUNCTION cmp_stats_days(p_site text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (day date, events bigint, accept_all bigint, reject_all bigint, custom bigint,
               withdraw bigint, purposes jsonb)
LANGUAGE sql STABLE AS $$
    WITH ev AS MATERIALIZED (
        SELECT (e.received_at AT TIME ZONE 'UTC')::date AS d, e.action, e.purposes AS pm
        FROM consent_events e
        WHERE e.site_id = p_site AND e.received_at >= p_from AND e.received_at < p_to
          AND e.action <> 'erased'
    ), per_action AS (
        SELECT ev.d, count(*) AS n,
               count(*) FILTER (WHERE ev.action = 'accept_all') AS n_accept,
               count(*) FILTER (WHERE ev.action = 'reject_all') AS n_reject,
               count(*) FILTER (WHERE ev.action = 'custom') AS n_custom,
               count(*) FILTER (WHERE ev.action = 'withdraw') AS n_withdraw
        FROM ev GROUP BY ev.d
    ), per_purpose AS (
        SELECT ev.d, p.key AS purpose, count(*) AS asked,
               count(*) FILTER (WHERE p.value = 'true'::jsonb) AS granted
        FROM ev CROSS JOIN LATERAL jsonb_each(coalesce(ev.pm, '{}'::jsonb)) AS p (key, value)
        GROUP BY ev.d, p.key
    ), purpose_maps AS (
        SELECT pp.d, jsonb_object_agg(pp.purpose, jsonb_build_array(pp.granted, pp.asked)) AS m
        FROM per_purpose pp GROUP BY pp.d
    )
    SELECT a.d, a.n, a.n_accept, a.n_reject, a.n_custom, a.n_withdraw,
           coalesce(m.m, '{}'::jsonb)
    FROM per_action a LEFT JOIN purpose_maps m ON m.d = a.d
$$;
