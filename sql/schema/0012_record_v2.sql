-- Record version 2 (docs/audit-log.md): each personal value (subject digest, page URL,
-- IP prefix, user agent) is chained as a salted commitment, sha256(salt ‖ value), so that
-- erasure deletes value and salt while the chain and every Merkle proof still verify.
-- Version 1 rows keep their columns as they are (`v` = 1: the fast default, no rewrite);
-- from here on the log's functions live in sql/functions/ (one live definition each,
-- applied after the migrations), and the record's SQL is generated from its declaration.

ALTER TABLE consent_events
    ADD COLUMN v smallint NOT NULL DEFAULT 1,
    ADD COLUMN subject_digest_sha256 bytea,
    ADD COLUMN subject_digest_salt bytea,
    ADD COLUMN page_url_sha256 bytea,
    ADD COLUMN page_url_salt bytea,
    ADD COLUMN ip_prefix_sha256 bytea,
    ADD COLUMN ip_prefix_salt bytea,
    ADD COLUMN user_agent_sha256 bytea,
    ADD COLUMN user_agent_salt bytea,
    -- erased from version 2 records (the commitment stays)
    ALTER COLUMN subject_digest DROP NOT NULL;
-- The default stays 1: during a rolling upgrade, a process of the previous release
-- appends through its own `cmp_append(cmp_new_event[])` (0008), which writes version 1
-- records, and one chain may hold both versions. A later migration drops that overload.

-- The erasure records of a site: an access request of an erased subject finds its
-- erasure by the commitment to its digest (the digest itself is gone).
CREATE INDEX consent_events_erased_idx ON consent_events (site_id, seq) WHERE action = 'erased';

-- One appended row of this release (cmp.store.events.NEW_EVENT_COLUMNS): a new type
-- rather than a changed one, so that the previous release's processes keep appending
-- with theirs until they are replaced.
CREATE TYPE cmp_new_event_v2 AS (
    site_id text, req integer, event_id uuid, subject_id text, subject_digest text,
    policy_version integer, policy_sha256 text, action text, purposes text,
    services text, gpc boolean, language text, source text, page_url text, origin text,
    user_agent text, ip_prefix text, occurred_at timestamptz, received_at timestamptz,
    body_digest bytea, head text, tail text,
    v smallint,
    subject_digest_sha256 bytea, subject_digest_salt bytea,
    page_url_sha256 bytea, page_url_salt bytea,
    ip_prefix_sha256 bytea, ip_prefix_salt bytea,
    user_agent_sha256 bytea, user_agent_salt bytea
);

-- The functions that read these columns (cmp_append over cmp_new_event_v2,
-- cmp_record_text, the log's guard, erasure) are defined by sql/functions/ right after.
