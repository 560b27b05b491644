-- Record version 2 gains `impression_id` (the showing a decision answers: time to
-- decision) and `variant` (the banner variant shown) (docs/api.md); both optional, null in
-- every version 1 row. cmp_append (sql/functions/append.sql) writes them.
ALTER TABLE consent_events
    ADD COLUMN impression_id uuid,
    ADD COLUMN variant text;

ALTER TYPE cmp_new_event_v2
    ADD ATTRIBUTE impression_id uuid,
    ADD ATTRIBUTE variant text;
