-- cmp_append in one layer over rows, and a missing chain head is an error.
--
-- Replaces 0002's column-array function and 0003's wrapper (which rebuilt the 22 column
-- arrays from the rows) by one function over `cmp_new_event[]` (the type of 0003). What
-- it does is unchanged: lock the chain heads of the batch's sites, tell retries from
-- conflicting reuses of an event id, give each new event its site's next seq and chain
-- hash, append the events, move each subject's state to its newest event. Returns one
-- outcome per input row: new | duplicate | conflict | skipped (another event of its
-- request conflicted: a request is stored whole or not at all). Event ids are unique
-- within a call (the caller defers a repeated id to the next batch).
--
-- The chain: hash = sha256(prev_hash || head || seq || tail), where the caller split
-- each record's canonical JSON around its seq (docs/audit-log.md).
--
-- A site without a log_heads row used to get NULL seqs and its events were silently
-- left out; now the whole statement fails. The SQLSTATE is XX000 (internal_error): a
-- missing head is a fault of the server, not of the request, so it must not fall in
-- the data-error classes 22/23 that the group commit retries request by request.
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
        JOIN consent_events e ON e.site_id = k.site_id AND e.event_id = k.event_id
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
    IF s IS NOT NULL THEN
        UPDATE log_heads SET seq = cur_seq, hash = cur_hash WHERE site_id = s;
    END IF;
    INSERT INTO consent_events (site_id, seq, event_id, subject_id, subject_digest,
        policy_version, policy_sha256, action, purposes, services, gpc, language, source,
        page_url, origin, user_agent, ip_prefix, occurred_at, received_at, body_digest,
        prev_hash, hash)
    SELECT k.site_id, c.seq, k.event_id, k.subject_id, k.subject_digest, k.policy_version,
        k.policy_sha256, k.action, k.purposes::jsonb, k.services::jsonb, k.gpc, k.language,
        k.source, k.page_url, k.origin, k.user_agent, k.ip_prefix, k.occurred_at,
        k.received_at, k.body_digest, c.prev_hash, c.hash
    FROM unnest(p_rows) WITH ORDINALITY AS k
    JOIN unnest(seqs, prevs, hashes) WITH ORDINALITY AS c (seq, prev_hash, hash, i)
        ON c.i = k.ordinality
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
