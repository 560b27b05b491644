-- Stats per jurisdiction rule and banner variant, with the impression funnel (issues 21
-- and 22, docs/api.md "Statistics"): the rolled-up days are keyed by rule and variant and
-- carry what the funnel needs from the decisions; impressions carry the visitor's rule.
--
-- The rolled-up event days cannot be split by rule after the fact, so they are forgotten:
-- the stats count every day from the records until the next maintenance run rolls the
-- closed days up again (the same answer, read from the records meanwhile).
DELETE FROM stats_days;
DELETE FROM stats_rollup;

-- Its result columns change (a rule and a variant per day); sql/functions/stats.sql
-- creates it again.
DROP FUNCTION cmp_stats_days(text, timestamptz, timestamptz);

ALTER TABLE stats_days
    DROP CONSTRAINT stats_days_pkey,
    ADD COLUMN rule text NOT NULL,                -- '' for records without one (version 1)
    ADD COLUMN variant text NOT NULL,             -- '' without variants
    ADD COLUMN decisions bigint NOT NULL,         -- neither API-imported nor GPC-automatic
    ADD COLUMN decided jsonb NOT NULL,            -- {purpose: [granted, asked]} of those
    ADD COLUMN interactions bigint NOT NULL,      -- of those, answers to a showing
    ADD COLUMN answered jsonb NOT NULL,           -- {action: n} of the interactions
    ADD COLUMN granted jsonb NOT NULL,            -- {purpose: granted} of the interactions
    ADD COLUMN api_imported bigint NOT NULL,
    ADD COLUMN gpc_automatic bigint NOT NULL,
    ADD COLUMN latency jsonb NOT NULL,            -- {bin seconds: n}: time to decision
    ADD PRIMARY KEY (site_id, day, rule, variant);

-- Impressions learn the visitor's rule; the days counted before are of sites without
-- rules ('' here) and of one variant each (variants came with them, unreleased), so the
-- whole-day rows ('*') are their sums exactly.
ALTER TABLE impressions ADD COLUMN rule text NOT NULL DEFAULT '';
ALTER TYPE cmp_new_impression ADD ATTRIBUTE rule text;

ALTER TABLE impression_days
    DROP CONSTRAINT impression_days_pkey,
    ADD COLUMN rule text NOT NULL DEFAULT '',
    ADD PRIMARY KEY (site_id, day, rule, variant, surface);
INSERT INTO impression_days (site_id, day, rule, variant, surface, impressions, visitors)
SELECT d.site_id, d.day, g.rule, g.variant, '', sum(d.impressions), sum(d.visitors)
FROM impression_days d
CROSS JOIN LATERAL (VALUES ('*', d.variant), ('', '*'), ('*', '*')) AS g (rule, variant)
WHERE d.surface = ''
GROUP BY d.site_id, d.day, g.rule, g.variant;
