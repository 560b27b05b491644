-- The whole data model of cmp. Every table is keyed by site_id first, so the data can
-- later be distributed by site (Citus-style) without a rebuild.

CREATE TABLE sites (
    site_id               text PRIMARY KEY CHECK (site_id ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    name                  text NOT NULL,
    origins               text[] NOT NULL DEFAULT '{}',
    languages             text[] NOT NULL,
    default_language      text NOT NULL,
    consent_validity_days integer NOT NULL CHECK (consent_validity_days > 0),
    retention_days        integer NOT NULL CHECK (retention_days > 0),
    -- per-site secret for subject_digest = HMAC-SHA256(subject_key, subject_id): lets
    -- erasure remove the id from the log while the hash chain still verifies.
    subject_key           bytea NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- Immutable, numbered snapshots of what the banner shows.
CREATE TABLE policy_versions (
    site_id        text NOT NULL REFERENCES sites (site_id),
    version        integer NOT NULL CHECK (version >= 1),
    material       boolean NOT NULL,
    document       jsonb NOT NULL,
    content_sha256 text NOT NULL CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    published_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, version),
    CHECK (version > 1 OR material)
);

CREATE FUNCTION cmp_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER policy_versions_immutable
    BEFORE UPDATE OR DELETE ON policy_versions
    FOR EACH ROW EXECUTE FUNCTION cmp_forbid_change();
CREATE TRIGGER policy_versions_no_truncate
    BEFORE TRUNCATE ON policy_versions
    FOR EACH STATEMENT EXECUTE FUNCTION cmp_forbid_change();

-- API keys: only a SHA-256 of the secret is kept (the secret has >= 256 random bits,
-- so a slow KDF buys nothing). site_id NULL = the root admin key.
CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    site_id      text REFERENCES sites (site_id),
    scope        text NOT NULL CHECK (scope IN ('admin', 'read', 'audit')),
    secret_hash  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz,
    CHECK (site_id IS NOT NULL OR scope = 'admin')
);
CREATE INDEX api_keys_site_idx ON api_keys (site_id, created_at);

-- Head of each site's hash chain. Writers lock this row (SELECT … FOR UPDATE) inside
-- the batch transaction, which serialises seq/hash assignment per site across processes.
CREATE TABLE log_heads (
    site_id text PRIMARY KEY REFERENCES sites (site_id),
    seq     bigint NOT NULL DEFAULT 0,
    hash    text NOT NULL DEFAULT repeat('0', 64)
);

-- The append-only consent log. Partitioning note: a monthly partitioning on received_at
-- would need the idempotency key (site_id, event_id) moved to its own table, because a
-- unique constraint on a partitioned table must contain the partition key; until a site
-- holds hundreds of millions of rows, one table with (site_id, seq) order is simpler and
-- purge deletes by seq range.
CREATE TABLE consent_events (
    site_id        text NOT NULL,
    seq            bigint NOT NULL CHECK (seq >= 1),
    event_id       uuid NOT NULL,
    subject_id     text,               -- NULL after erasure; the chain hashes the digest
    subject_digest text NOT NULL,
    policy_version integer,
    policy_sha256  text,
    action         text NOT NULL
        CHECK (action IN ('accept_all', 'reject_all', 'custom', 'withdraw', 'erased')),
    purposes       jsonb,
    services       jsonb,
    gpc            boolean,
    language       text,
    source         text,
    page_url       text,
    origin         text,
    user_agent     text,
    ip_prefix      text,               -- truncated: IPv4 /24, IPv6 /48; never a raw IP
    occurred_at    timestamptz,
    received_at    timestamptz NOT NULL,
    body_digest    bytea,              -- digest of the normalised event: tells a retry from a conflict
    prev_hash      text NOT NULL,
    hash           text NOT NULL,
    PRIMARY KEY (site_id, seq),
    UNIQUE (site_id, event_id)
);
CREATE INDEX consent_events_subject_idx ON consent_events (site_id, subject_digest, seq);
CREATE INDEX consent_events_received_idx ON consent_events (site_id, received_at);

-- Only two changes are allowed on the log: erasure nulls subject_id, and retention purge
-- deletes old rows (the purge job sets cmp.purge = 'on' for its transaction).
CREATE FUNCTION cmp_guard_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('cmp.purge', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'consent_events is append-only: DELETE only by retention purge'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.subject_id IS NULL
       AND (to_jsonb(NEW) - 'subject_id') = (to_jsonb(OLD) - 'subject_id') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'consent_events is append-only: only erasure of subject_id is allowed'
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER consent_events_guard
    BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION cmp_guard_events();
CREATE TRIGGER consent_events_no_truncate
    BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION cmp_forbid_change();

-- Current consent per (site, subject): the latest event, by seq.
CREATE TABLE consent_state (
    site_id        text NOT NULL,
    subject_id     text NOT NULL,
    seq            bigint NOT NULL,
    event_id       uuid NOT NULL,
    policy_version integer NOT NULL,
    action         text NOT NULL,
    purposes       jsonb NOT NULL,
    services       jsonb NOT NULL,
    gpc            boolean NOT NULL,
    recorded_at    timestamptz NOT NULL,
    PRIMARY KEY (site_id, subject_id)
);

-- Signed checkpoints kept so an auditor can hold the operator to an earlier one; also
-- the anchor of the chain after retention purged its start.
CREATE TABLE log_checkpoints (
    site_id   text NOT NULL REFERENCES sites (site_id),
    seq       bigint NOT NULL,
    hash      text NOT NULL,
    signed_at timestamptz NOT NULL,
    key_id    text NOT NULL,
    signature text NOT NULL,
    kind      text NOT NULL DEFAULT 'periodic' CHECK (kind IN ('periodic', 'anchor')),
    PRIMARY KEY (site_id, seq, kind)
);
