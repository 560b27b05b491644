-- Provisional counts of the days not rolled up yet, for the sites whose raw impressions
-- of such a day are too many to count on every stats read (issue 22, docs/log-storage.md):
-- the maintenance loop counts them now and then (cmp.store.impressions.refresh_provisional)
-- at the levels of impression_days, and the stats read takes them instead of the raw
-- rows, saying `as_of`. Rolling the day up deletes them (cmp_roll_up_impressions).
CREATE TABLE impression_provisional (
    site_id     text NOT NULL,
    day         date NOT NULL,
    rule        text NOT NULL,
    variant     text NOT NULL,
    surface     text NOT NULL,
    impressions bigint NOT NULL,
    visitors    bigint NOT NULL,
    as_of       timestamptz NOT NULL,  -- when the count's snapshot was taken
    PRIMARY KEY (site_id, day, rule, variant, surface)
);
