-- Consent statistics by UTC day, rule and variant (issues 12, 21 and 22).
--
-- stats_days holds the days a site has rolled up and stats_rollup says which those are
-- (0010_create_stats_days.sql; cmp/store/stats.py rolls up closed days only); the days
-- outside are counted from the records, by this same function, so both agree.

-- The one definition of the counting: a site's records in [p_from, p_to) per UTC day,
-- rule and variant ('' where the record has none). Only consent decisions count
-- (accept_all, reject_all, custom, withdraw): `erased`, `link` and `unlink` records are
-- bookkeeping.
--   events, the four actions, purposes: every decision. A purpose's `asked` counts the
--     events whose policy version offered it (the purposes map names every purpose of its
--     version), `granted` those of them that granted it: {purpose: [granted, asked]}.
--   api_imported: posted without an Origin (server to server, with an admin key);
--   gpc_automatic: from a browser, with GPC, answering no showing (no impression_id): the
--     signal decided, not the visitor. Neither counts below (Didomi's rule).
--   decisions, decided: the other decisions, and {purpose: [granted, asked]} over them.
--   interactions: of those, accept_all, reject_all and custom answering a showing (with an
--     impression_id); answered = {action: n} of them, granted = {purpose: n granted}.
--   latency: {bin: n}, the interactions' time from the showing to the decision's arrival
--     (cmp_latency_bin), where the showing was counted on the decision's UTC day or the
--     day before: those raw days are kept until the decision's day is rolled up
--     (cmp/store/impressions.py RAW_DAYS), so the rollup and a recount agree.
-- LANGUAGE sql, STABLE and a single query, so the planner inlines it into the caller and
-- reads the range by the (site_id, received_at) index of its months only.
-- History: 0010, 0018 (per rule and variant, the funnel).
CREATE OR REPLACE FUNCTION cmp_stats_days(p_site text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (day date, rule text, variant text, events bigint, accept_all bigint,
               reject_all bigint, custom bigint, withdraw bigint, purposes jsonb,
               decisions bigint, decided jsonb, interactions bigint, answered jsonb,
               granted jsonb, api_imported bigint, gpc_automatic bigint, latency jsonb)
LANGUAGE sql STABLE AS $$
    WITH raw AS MATERIALIZED (
        SELECT (e.received_at AT TIME ZONE 'UTC')::date AS d, coalesce(e.rule, '') AS r,
               coalesce(e.variant, '') AS v, e.action, e.purposes AS pm, e.received_at,
               e.impression_id,
               e.origin IS NULL AS api,
               e.origin IS NOT NULL AND coalesce(e.gpc, false) AND e.impression_id IS NULL
                   AS auto
        FROM consent_events e
        WHERE e.site_id = p_site AND e.received_at >= p_from AND e.received_at < p_to
          AND e.action IN ('accept_all', 'reject_all', 'custom', 'withdraw')
    ), ev AS MATERIALIZED (
        SELECT raw.*, NOT (raw.api OR raw.auto) AS counted,
               NOT (raw.api OR raw.auto) AND raw.impression_id IS NOT NULL
                   AND raw.action <> 'withdraw' AS inter,
               CASE WHEN NOT (raw.api OR raw.auto) AND raw.action <> 'withdraw' THEN
                   (SELECT cmp_latency_bin(raw.received_at - i.received_at)
                    FROM impressions i
                    WHERE i.site_id = p_site AND i.impression_id = raw.impression_id
                      AND i.day IN (raw.d, raw.d - 1)
                    ORDER BY i.day LIMIT 1)
               END AS bin
        FROM raw
    ), per_action AS (
        SELECT ev.d, ev.r, ev.v, count(*) AS n,
               count(*) FILTER (WHERE ev.action = 'accept_all') AS n_accept,
               count(*) FILTER (WHERE ev.action = 'reject_all') AS n_reject,
               count(*) FILTER (WHERE ev.action = 'custom') AS n_custom,
               count(*) FILTER (WHERE ev.action = 'withdraw') AS n_withdraw,
               count(*) FILTER (WHERE ev.counted) AS n_counted,
               count(*) FILTER (WHERE ev.inter) AS n_inter,
               jsonb_build_object(
                   'accept_all', count(*) FILTER (WHERE ev.inter AND ev.action = 'accept_all'),
                   'reject_all', count(*) FILTER (WHERE ev.inter AND ev.action = 'reject_all'),
                   'custom', count(*) FILTER (WHERE ev.inter AND ev.action = 'custom'))
                   AS answered,
               count(*) FILTER (WHERE ev.api) AS n_api,
               count(*) FILTER (WHERE ev.auto) AS n_auto
        FROM ev GROUP BY ev.d, ev.r, ev.v
    ), per_purpose AS (
        SELECT ev.d, ev.r, ev.v, p.key AS purpose, count(*) AS asked,
               count(*) FILTER (WHERE p.value = 'true'::jsonb) AS granted,
               count(*) FILTER (WHERE ev.counted) AS c_asked,
               count(*) FILTER (WHERE ev.counted AND p.value = 'true'::jsonb) AS c_granted,
               count(*) FILTER (WHERE ev.inter AND p.value = 'true'::jsonb) AS i_granted
        FROM ev CROSS JOIN LATERAL jsonb_each(coalesce(ev.pm, '{}'::jsonb)) AS p (key, value)
        GROUP BY ev.d, ev.r, ev.v, p.key
    ), purpose_maps AS (
        SELECT pp.d, pp.r, pp.v,
               jsonb_object_agg(pp.purpose, jsonb_build_array(pp.granted, pp.asked)) AS m,
               coalesce(jsonb_object_agg(pp.purpose, jsonb_build_array(pp.c_granted, pp.c_asked))
                            FILTER (WHERE pp.c_asked > 0), '{}'::jsonb) AS decided,
               coalesce(jsonb_object_agg(pp.purpose, pp.i_granted)
                            FILTER (WHERE pp.i_granted > 0), '{}'::jsonb) AS granted
        FROM per_purpose pp GROUP BY pp.d, pp.r, pp.v
    ), per_bin AS (
        SELECT ev.d, ev.r, ev.v, ev.bin, count(*) AS n
        FROM ev WHERE ev.inter AND ev.bin IS NOT NULL
        GROUP BY ev.d, ev.r, ev.v, ev.bin
    ), latency_maps AS (
        SELECT b.d, b.r, b.v, jsonb_object_agg(b.bin::text, b.n) AS m
        FROM per_bin b GROUP BY b.d, b.r, b.v
    )
    SELECT a.d, a.r, a.v, a.n, a.n_accept, a.n_reject, a.n_custom, a.n_withdraw,
           coalesce(m.m, '{}'::jsonb), a.n_counted, coalesce(m.decided, '{}'::jsonb),
           a.n_inter, a.answered, coalesce(m.granted, '{}'::jsonb), a.n_api, a.n_auto,
           coalesce(l.m, '{}'::jsonb)
    FROM per_action a
    LEFT JOIN purpose_maps m ON m.d = a.d AND m.r = a.r AND m.v = a.v
    LEFT JOIN latency_maps l ON l.d = a.d AND l.r = a.r AND l.v = a.v
$$;

-- The bin of a time to decision, in whole seconds (its lower end): to the second below a
-- minute, to 10 s below an hour, to 5 min beyond; a negative time (two servers' clocks)
-- is 0. Days of bins add up, so a bucket's median is read from the sum of its days'.
CREATE OR REPLACE FUNCTION cmp_latency_bin(p_elapsed interval) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN s < 60 THEN floor(s)
        WHEN s < 3600 THEN floor(s / 10) * 10
        ELSE floor(s / 300) * 300
    END::bigint
    FROM (SELECT greatest(extract(epoch FROM p_elapsed), 0) AS s) AS t
$$;
