-- Impressions (docs/api.md): one showing of the banner, its settings layer or a re-prompt.
-- Statistics, not proof: not chained, and a raw row lives only as long as the dedup and
-- the day's unique-visitor count need it (cmp/store/impressions.py, RAW_DAYS); closed
-- days are rolled up into impression_days and their partitions dropped whole.
--
-- Partitioned by the UTC day of arrival (a partition per day, made ahead and on demand
-- by cmp_count_impressions, sql/functions/impressions.sql), so a day leaves as one
-- DROP TABLE. No foreign key to sites: each insert would check it, and rows outlive no
-- one. `visitor` is a keyed digest of the subject id (8 bytes, the site's subject key):
-- enough to count visitors, useless outside the site, never the id itself.

CREATE TABLE impressions (
    site_id        text NOT NULL,
    day            date NOT NULL,
    impression_id  uuid NOT NULL,
    visitor        bytea NOT NULL,
    policy_version integer NOT NULL,
    surface        text NOT NULL,
    variant        text NOT NULL,           -- '' when the version has no variants
    received_at    timestamptz NOT NULL,
    -- The dedup key: a retry on the same day conflicts here; one sent the next day is
    -- found in the previous day's partition by the same index.
    PRIMARY KEY (site_id, impression_id, day)
) PARTITION BY RANGE (day);

-- One row of a counted batch (cmp.store.impressions.NEW_IMPRESSION_COLUMNS).
CREATE TYPE cmp_new_impression AS (
    site_id text, impression_id uuid, visitor bytea, policy_version integer,
    surface text, variant text, received_at timestamptz
);

-- Closed days, counted: per site, day, variant and surface; surface '' is every surface
-- of that variant together, so that its `visitors` counts a visitor once per day.
CREATE TABLE impression_days (
    site_id     text NOT NULL,
    day         date NOT NULL,
    variant     text NOT NULL,
    surface     text NOT NULL,
    impressions bigint NOT NULL,
    visitors    bigint NOT NULL,
    PRIMARY KEY (site_id, day, variant, surface)
);

-- The days rolled up (every site's at once): their raw rows are no longer read.
CREATE TABLE impression_rollup (
    day date PRIMARY KEY
);
