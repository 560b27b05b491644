-- Linked users (docs/linked-users.md): a subject linked to one of the site's own users
-- by a `link` record and unlinked by an `unlink` record, appended to the chain. The user
-- is record version 2's personal field `user_digest` (a keyed digest of the normalised
-- user id, chained as a salted commitment, erasable like the other personal values).
ALTER TABLE consent_events
    ADD COLUMN user_digest text,
    ADD COLUMN user_digest_sha256 bytea,
    ADD COLUMN user_digest_salt bytea;

ALTER TYPE cmp_new_event_v2
    ADD ATTRIBUTE user_digest text,
    ADD ATTRIBUTE user_digest_sha256 bytea,
    ADD ATTRIBUTE user_digest_salt bytea;

-- Access by user: the subjects ever linked to a user, from its link records.
CREATE INDEX consent_events_user_idx ON consent_events (site_id, user_digest)
    WHERE user_digest IS NOT NULL;

-- Which user each subject is linked to now (the latest link or unlink record decides;
-- both are appended holding the site's chain head, so in seq order). Derived, like
-- consent_state: erasure deletes the row.
CREATE TABLE subject_links (
    site_id     text NOT NULL REFERENCES sites (site_id),
    subject_id  text NOT NULL,
    user_digest text NOT NULL,
    seq         bigint NOT NULL,
    linked_at   timestamptz NOT NULL,
    PRIMARY KEY (site_id, subject_id)
);
CREATE INDEX subject_links_user_idx ON subject_links (site_id, user_digest);

-- The `identify` scope: a server-to-server key that links subjects to users.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_scope_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scope_check
    CHECK (scope IN ('admin', 'read', 'audit', 'identify'));

-- share_across_devices: a linked subject's own state is its user's state. link_secret:
-- the HMAC key of the banner's link tokens (null until the site's admin asks for one).
ALTER TABLE sites
    ADD COLUMN share_across_devices boolean NOT NULL DEFAULT true,
    ADD COLUMN link_secret bytea CHECK (length(link_secret) >= 32);

-- The log takes the two new actions. 0006 made the check while the table it replaced
-- still held the name consent_events_action_check, so it is found by what it checks.
DO $$
DECLARE
    c text;
BEGIN
    FOR c IN SELECT conname FROM pg_constraint
             WHERE conrelid = 'consent_events'::regclass AND contype = 'c'
               AND pg_get_constraintdef(oid) LIKE '%action%'
    LOOP
        EXECUTE format('ALTER TABLE consent_events DROP CONSTRAINT %I', c);
    END LOOP;
END $$;
ALTER TABLE consent_events ADD CONSTRAINT consent_events_action_check
    CHECK (action IN ('accept_all', 'reject_all', 'custom', 'withdraw', 'erased', 'link',
                      'unlink'));
