-- consent_events in monthly range partitions of the server's received_at (UTC months),
-- with the idempotency key (site_id, event_id) in its own table.
--
-- Why: retention then drops a month of the log instead of deleting it row by row, and
-- every index stays the size of one month. A unique key on a partitioned table must
-- contain the partition key, so (site_id, event_id) moves to consent_event_ids, which
-- also keeps the body digest that tells a retry from a conflicting reuse of an id.
-- There is no DEFAULT partition (it would have to be scanned on every attach and
-- blocks detaching); instead partitions are created ahead (`cmpd migrate`, the
-- maintenance task) and, as the last resort, by cmp_append itself for a month that has
-- none, so an event is never refused for want of a partition.
--
-- Existing rows are copied in this migration's transaction (the log is unavailable for
-- writes meanwhile; on a large install run `cmpd migrate` in a maintenance window).
--
-- The same migration gives cmp_append its final form: one function over rows (it
-- replaces 0002's column-array function and 0003's wrapper, which rebuilt the 22
-- column arrays from the rows), and a site without a log_heads row is an error. Such a
-- site used to get NULL seqs and its events were silently left out; now the whole
-- statement fails with SQLSTATE XX000 (internal_error): a missing head is a fault of
-- the server, not of the request, so it must not fall in the data-error classes 22/23
-- that the group commit retries request by request.

-- The partition for the UTC month of p_at; created when missing. Creation locks the
-- parent in SHARE UPDATE EXCLUSIVE mode only (it does not wait for readers or writers,
-- but one creator at a time) and attaches a new table, instead of CREATE … PARTITION OF,
-- which would take an ACCESS EXCLUSIVE lock on the whole log.
CREATE FUNCTION cmp_event_partition(p_at timestamptz) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    lo timestamp := date_trunc('month', p_at AT TIME ZONE 'UTC');
    part text := 'consent_events_' || to_char(lo, 'YYYY_MM');
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN part;
    END IF;
    LOCK TABLE consent_events IN SHARE UPDATE EXCLUSIVE MODE;
    -- Taking the lock read the catalog afresh: another creator may have just done it.
    IF to_regclass(part) IS NULL THEN
        EXECUTE format('CREATE TABLE %I (LIKE consent_events INCLUDING DEFAULTS'
                       ' INCLUDING CONSTRAINTS)', part);
        EXECUTE format('ALTER TABLE consent_events ATTACH PARTITION %I'
                       ' FOR VALUES FROM (%L) TO (%L)', part,
                       lo AT TIME ZONE 'UTC', (lo + interval '1 month') AT TIME ZONE 'UTC');
    END IF;
    RETURN part;
END $$;

-- Partitions from the month of p_from through p_months months after now().
CREATE FUNCTION cmp_event_partitions_ahead(p_from timestamptz, p_months integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    m timestamp;
    made integer := 0;
BEGIN
    FOR m IN
        SELECT generate_series(date_trunc('month', p_from AT TIME ZONE 'UTC'),
                               date_trunc('month', now() AT TIME ZONE 'UTC')
                                   + make_interval(months => p_months),
                               interval '1 month')
    LOOP
        IF to_regclass('consent_events_' || to_char(m, 'YYYY_MM')) IS NULL THEN
            PERFORM cmp_event_partition(m AT TIME ZONE 'UTC');
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END $$;

-- The single table steps aside (its names are needed for the new one).
ALTER TABLE consent_events RENAME TO consent_events_single;
ALTER INDEX consent_events_pkey RENAME TO consent_events_single_pkey;
ALTER INDEX consent_events_site_id_event_id_key RENAME TO consent_events_single_event_key;
ALTER INDEX consent_events_subject_idx RENAME TO consent_events_single_subject_idx;
ALTER INDEX consent_events_received_idx RENAME TO consent_events_single_received_idx;

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
    prev_hash      text NOT NULL,
    hash           text NOT NULL,
    -- seq is unique per site by the chain head; the key must carry the partition key.
    -- Export reads it in (site_id, seq) order, merged across the months.
    PRIMARY KEY (site_id, seq, received_at)
) PARTITION BY RANGE (received_at);
-- A subject's history (access requests, export by subject) and erasure by digest.
CREATE INDEX consent_events_subject_idx ON consent_events (site_id, subject_digest, seq);
-- Time ranges of one site (stats by day, export of a period) and the purge cut.
CREATE INDEX consent_events_received_idx ON consent_events (site_id, received_at);

CREATE TRIGGER consent_events_guard
    BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION cmp_guard_events();
CREATE TRIGGER consent_events_no_truncate
    BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION cmp_forbid_change();

-- Every event id a site has stored, across all months. Rows leave only with their
-- event, by retention purge.
CREATE TABLE consent_event_ids (
    site_id     text NOT NULL,
    event_id    uuid NOT NULL,
    body_digest bytea,                 -- digest of the normalised event: retry or conflict
    PRIMARY KEY (site_id, event_id)
);

CREATE FUNCTION cmp_guard_event_ids() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('cmp.purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'consent_event_ids is append-only: % only by retention purge', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER consent_event_ids_guard
    BEFORE UPDATE OR DELETE ON consent_event_ids
    FOR EACH ROW EXECUTE FUNCTION cmp_guard_event_ids();
CREATE TRIGGER consent_event_ids_no_truncate
    BEFORE TRUNCATE ON consent_event_ids
    FOR EACH STATEMENT EXECUTE FUNCTION cmp_forbid_change();

SELECT cmp_event_partitions_ahead(
    coalesce((SELECT min(received_at) FROM consent_events_single), now()), 3);

INSERT INTO consent_events (site_id, seq, event_id, subject_id, subject_digest,
    policy_version, policy_sha256, action, purposes, services, gpc, language, source,
    page_url, origin, user_agent, ip_prefix, occurred_at, received_at, prev_hash, hash)
SELECT site_id, seq, event_id, subject_id, subject_digest, policy_version, policy_sha256,
    action, purposes, services, gpc, language, source, page_url, origin, user_agent,
    ip_prefix, occurred_at, received_at, prev_hash, hash
FROM consent_events_single;

INSERT INTO consent_event_ids (site_id, event_id, body_digest)
SELECT site_id, event_id, body_digest FROM consent_events_single;

DROP TABLE consent_events_single;

ANALYZE consent_events;
ANALYZE consent_event_ids;

-- cmp_append over one array of rows (`cmp_new_event[]`, the type of 0003). It locks the
-- chain heads of the batch's sites, tells retries from conflicting reuses of an event
-- id (in consent_event_ids), gives each new event its site's next seq and chain hash
-- (hash = sha256(prev_hash || head || seq || tail): the caller split each record's
-- canonical JSON around its seq, docs/audit-log.md), appends the events and their ids
-- and moves each subject's state to its newest event. Returns one outcome per input
-- row: new | duplicate | conflict | skipped (another event of its request conflicted:
-- a request is stored whole or not at all). Event ids are unique within a call (the
-- caller defers a repeated id to the next batch).
DROP FUNCTION cmp_append(cmp_new_event[]);
DROP FUNCTION cmp_append(
    text[], integer[], uuid[], text[], text[], integer[], text[], text[], jsonb[], jsonb[],
    boolean[], text[], text[], text[], text[], text[], text[], timestamptz[], timestamptz[],
    bytea[], text[], text[]);

CREATE FUNCTION cmp_append(p_rows cmp_new_event[]) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(cardinality(p_rows), 0);
    outcome text[] := array_fill('new'::text, ARRAY[n]);
    bad integer[] := '{}';
    seqs bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    prevs text[] := array_fill(NULL::text, ARRAY[n]);
    hashes text[] := array_fill(NULL::text, ARRAY[n]);
    r record;
    s text;
    cur_seq bigint;
    cur_hash text;
    i integer;
BEGIN
    IF n = 0 THEN
        RETURN outcome;
    END IF;
    -- Site order: two processes locking the same sites cannot deadlock.
    PERFORM 1 FROM log_heads
    WHERE site_id = any(ARRAY(SELECT DISTINCT x.site_id FROM unnest(p_rows) AS x))
    ORDER BY site_id FOR UPDATE;
    -- A new statement, so a new snapshot: it sees everything committed before the lock.
    FOR r IN
        SELECT k.ordinality AS i, k.req, k.body_digest AS sent, e.body_digest AS stored
        FROM unnest(p_rows) WITH ORDINALITY AS k
        JOIN consent_event_ids e ON e.site_id = k.site_id AND e.event_id = k.event_id
    LOOP
        IF r.stored IS NOT DISTINCT FROM r.sent THEN
            outcome[r.i] := 'duplicate';
        ELSE
            outcome[r.i] := 'conflict';
            bad := bad || r.req;
        END IF;
    END LOOP;
    IF cardinality(bad) > 0 THEN
        FOR r IN SELECT k.ordinality AS i, k.req FROM unnest(p_rows) WITH ORDINALITY AS k LOOP
            IF outcome[r.i] = 'new' AND r.req = any(bad) THEN
                outcome[r.i] := 'skipped';
            END IF;
        END LOOP;
    END IF;
    -- Stream the rows (element access into the parameter would walk the array each
    -- time); local arrays are expanded, so assigning their elements is O(1).
    FOR r IN
        SELECT k.ordinality AS i, k.site_id, k.head, k.tail
        FROM unnest(p_rows) WITH ORDINALITY AS k
        ORDER BY k.site_id, k.ordinality
    LOOP
        CONTINUE WHEN outcome[r.i] <> 'new';
        IF s IS DISTINCT FROM r.site_id THEN
            IF s IS NOT NULL THEN
                UPDATE log_heads SET seq = cur_seq, hash = cur_hash WHERE site_id = s;
            END IF;
            s := r.site_id;
            SELECT h.seq, h.hash INTO cur_seq, cur_hash FROM log_heads h WHERE h.site_id = s;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'cmp_append: site % has no log_heads row', s
                    USING ERRCODE = 'internal_error';
            END IF;
        END IF;
        cur_seq := cur_seq + 1;
        prevs[r.i] := cur_hash;
        cur_hash := encode(sha256(convert_to(
            cur_hash || r.head || cur_seq::text || r.tail, 'UTF8')), 'hex');
        seqs[r.i] := cur_seq;
        hashes[r.i] := cur_hash;
    END LOOP;
    IF s IS NULL THEN
        RETURN outcome;
    END IF;
    UPDATE log_heads SET seq = cur_seq, hash = cur_hash WHERE site_id = s;
    -- The months are made ahead; this is the fallback that never refuses an event.
    FOR r IN SELECT DISTINCT date_trunc('month', k.received_at, 'UTC') AS m
             FROM unnest(p_rows) AS k
    LOOP
        IF to_regclass('consent_events_' || to_char(r.m AT TIME ZONE 'UTC', 'YYYY_MM'))
           IS NULL THEN
            PERFORM cmp_event_partition(r.m);
        END IF;
    END LOOP;
    INSERT INTO consent_events (site_id, seq, event_id, subject_id, subject_digest,
        policy_version, policy_sha256, action, purposes, services, gpc, language, source,
        page_url, origin, user_agent, ip_prefix, occurred_at, received_at, prev_hash, hash)
    SELECT k.site_id, c.seq, k.event_id, k.subject_id, k.subject_digest, k.policy_version,
        k.policy_sha256, k.action, k.purposes::jsonb, k.services::jsonb, k.gpc, k.language,
        k.source, k.page_url, k.origin, k.user_agent, k.ip_prefix, k.occurred_at,
        k.received_at, c.prev_hash, c.hash
    FROM unnest(p_rows) WITH ORDINALITY AS k
    JOIN unnest(seqs, prevs, hashes) WITH ORDINALITY AS c (seq, prev_hash, hash, i)
        ON c.i = k.ordinality
    WHERE c.seq IS NOT NULL;
    INSERT INTO consent_event_ids (site_id, event_id, body_digest)
    SELECT k.site_id, k.event_id, k.body_digest
    FROM unnest(p_rows) WITH ORDINALITY AS k
    JOIN unnest(seqs) WITH ORDINALITY AS c (seq, i) ON c.i = k.ordinality
    WHERE c.seq IS NOT NULL;
    INSERT INTO consent_state (site_id, subject_id, seq, event_id, policy_version, action,
        purposes, services, gpc, recorded_at)
    SELECT DISTINCT ON (k.site_id, k.subject_id)
        k.site_id, k.subject_id, c.seq, k.event_id, k.policy_version, k.action,
        k.purposes::jsonb, k.services::jsonb, k.gpc, k.received_at
    FROM unnest(p_rows) WITH ORDINALITY AS k
    JOIN unnest(seqs) WITH ORDINALITY AS c (seq, i) ON c.i = k.ordinality
    WHERE c.seq IS NOT NULL
    ORDER BY k.site_id, k.subject_id, c.seq DESC
    ON CONFLICT (site_id, subject_id) DO UPDATE
        SET seq = excluded.seq, event_id = excluded.event_id,
            policy_version = excluded.policy_version, action = excluded.action,
            purposes = excluded.purposes, services = excluded.services, gpc = excluded.gpc,
            recorded_at = excluded.recorded_at
        WHERE consent_state.seq < excluded.seq;
    RETURN outcome;
END $$;

-- Retention by the month: does every row of partition p_part lie at or before its
-- site's purge cut (p_sites[i] through seq p_cuts[i])? One index probe per site.
CREATE FUNCTION cmp_event_partition_expired(p_part text, p_sites text[], p_cuts bigint[])
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    kept boolean;
BEGIN
    EXECUTE format(
        'SELECT EXISTS (SELECT 1 FROM sites s'
        '  LEFT JOIN unnest($1, $2) AS c (site_id, seq) ON c.site_id = s.site_id'
        '  WHERE EXISTS (SELECT 1 FROM %I e'
        '                WHERE e.site_id = s.site_id AND e.seq > coalesce(c.seq, 0)))',
        p_part)
    INTO kept USING p_sites, p_cuts;
    RETURN NOT kept;
END $$;

-- Drop a whole month of the log (with its rows' idempotency keys). Detaching needs an
-- ACCESS EXCLUSIVE lock on the log, held to the end of the transaction (so the caller
-- commits right after); when it is not granted within p_wait (readers hold the log),
-- nothing happens and false is returned, so that the caller deletes the rows instead
-- of making ingest queue behind the lock.
CREATE FUNCTION cmp_drop_event_partition(p_part text, p_wait text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    saved text := current_setting('lock_timeout');
BEGIN
    PERFORM set_config('lock_timeout', p_wait, true);
    BEGIN
        -- The keys first, while ingest still runs beside this.
        EXECUTE format('DELETE FROM consent_event_ids i USING %I e'
                       ' WHERE i.site_id = e.site_id AND i.event_id = e.event_id', p_part);
        EXECUTE format('ALTER TABLE consent_events DETACH PARTITION %I', p_part);
        EXECUTE format('DROP TABLE %I', p_part);
    EXCEPTION WHEN lock_not_available THEN
        PERFORM set_config('lock_timeout', saved, true);
        RETURN false;
    END;
    PERFORM set_config('lock_timeout', saved, true);
    RETURN true;
END $$;
