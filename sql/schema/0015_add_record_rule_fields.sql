-- Record version 2 gains the jurisdiction rule an event was recorded under, the rule's
-- content hash as it was, and the visitor's coarse location (docs/jurisdictions.md).
-- Version 2 is unreleased: no log holds a version 2 record written without these, so
-- they join version 2 rather than making a version 3, and the appended row's type grows
-- in place (ALTER TYPE, not a new type: no released process appends with it yet).
-- Version 1 rows keep them null and hash without them.
ALTER TABLE consent_events
    ADD COLUMN rule text,
    ADD COLUMN rule_sha256 text,
    ADD COLUMN country text,
    ADD COLUMN region text;

-- The subject's rule, so that its state is computed under it (docs/jurisdictions.md).
ALTER TABLE consent_state ADD COLUMN rule text;

ALTER TYPE cmp_new_event_v2
    ADD ATTRIBUTE rule text,
    ADD ATTRIBUTE rule_sha256 text,
    ADD ATTRIBUTE country text,
    ADD ATTRIBUTE region text;
