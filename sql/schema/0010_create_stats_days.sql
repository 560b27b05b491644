-- Consent statistics rolled up by UTC day, so that stats over a long range read one row
-- per day instead of every record of the range (issue 12, item 4).
--
-- stats_rollup says which days of a site are rolled up: [from_day, through_day). Each
-- such day with counted records has its stats_days row; a day without one counts zero.
-- Days before from_day (not rolled up yet, or partly purged) and from through_day on
-- (not closed yet) are counted from the records. Only closed days are rolled up (the
-- day ended well before now: see cmp/store/stats.py), and a day's records never change
-- afterwards except by retention purge, which moves from_day past the purged days.

-- The one definition of the counting: a site's records in [p_from, p_to) per UTC day.
-- `erased` records are not consent and are left out. A purpose's `asked` counts the
-- events whose policy version offered it (the purposes map names every purpose of its
-- version), `granted` those of them that granted it: purposes = {purpose: [granted,
-- asked]}. LANGUAGE sql, STABLE and a single query, so the planner inlines it into the
-- caller and reads the range by the (site_id, received_at) index of its months only.
CREATE FUNCTION cmp_stats_days(p_site text, p_from timestamptz, p_to timestamptz)
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

CREATE TABLE stats_days (
    site_id    text NOT NULL REFERENCES sites,
    day        date NOT NULL,
    events     bigint NOT NULL,
    accept_all bigint NOT NULL,
    reject_all bigint NOT NULL,
    custom     bigint NOT NULL,
    withdraw   bigint NOT NULL,
    purposes   jsonb NOT NULL,          -- {purpose: [granted, asked]}
    PRIMARY KEY (site_id, day)
);

CREATE TABLE stats_rollup (
    site_id     text PRIMARY KEY REFERENCES sites,
    from_day    date NOT NULL,
    through_day date NOT NULL,          -- exclusive
    CHECK (from_day <= through_day)
);
