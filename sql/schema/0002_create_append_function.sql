-- cmp_append: a whole group-commit batch in one statement (one round trip, committed
-- by the statement itself). It locks the chain heads of the batch's sites, tells retries
-- from conflicting reuses of an event id, gives each new event its site's next seq and
-- chain hash, appends the events and moves each subject's state to its newest event.
--
-- The caller sends each record's canonical JSON split around its seq (p_head, p_tail),
-- so hash = sha256(prev_hash || p_head || seq || p_tail) is exactly
-- sha256(prev_hash || canonical_json(record)) of docs/audit-log.md, computed here under
-- the lock without any further round trip. Event ids are unique within a call (the
-- caller defers a repeated id to the next batch). Returns one outcome per input
-- position: new | duplicate | conflict | skipped (another event of its request
-- conflicted: a request is stored whole or not at all).
CREATE FUNCTION cmp_append(
    p_site text[], p_req integer[], p_event uuid[], p_subject text[], p_digest text[],
    p_version integer[], p_sha text[], p_action text[], p_purposes jsonb[],
    p_services jsonb[], p_gpc boolean[], p_language text[], p_source text[],
    p_page text[], p_origin text[], p_agent text[], p_ip text[],
    p_occurred timestamptz[], p_received timestamptz[], p_body bytea[],
    p_head text[], p_tail text[]
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(array_length(p_site, 1), 0);
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
    PERFORM 1 FROM log_heads WHERE site_id = any(p_site) ORDER BY site_id FOR UPDATE;
    -- A new statement, so a new snapshot: it sees everything committed before the lock.
    FOR r IN
        SELECT k.i, e.body_digest
        FROM unnest(p_site, p_event) WITH ORDINALITY AS k (site_id, event_id, i)
        JOIN consent_events e ON e.site_id = k.site_id AND e.event_id = k.event_id
    LOOP
        IF r.body_digest IS NOT DISTINCT FROM p_body[r.i] THEN
            outcome[r.i] := 'duplicate';
        ELSE
            outcome[r.i] := 'conflict';
            bad := bad || p_req[r.i];
        END IF;
    END LOOP;
    IF cardinality(bad) > 0 THEN
        FOR i IN 1..n LOOP
            IF outcome[i] = 'new' AND p_req[i] = any(bad) THEN
                outcome[i] := 'skipped';
            END IF;
        END LOOP;
    END IF;
    -- Stream the rows (element access into the text parameters would walk the array
    -- each time); local arrays are expanded, so assigning their elements is O(1).
    FOR r IN
        SELECT x.i, x.site_id, x.head, x.tail
        FROM unnest(p_site, p_head, p_tail) WITH ORDINALITY AS x (site_id, head, tail, i)
        ORDER BY x.site_id, x.i
    LOOP
        CONTINUE WHEN outcome[r.i] <> 'new';
        IF s IS DISTINCT FROM r.site_id THEN
            IF s IS NOT NULL THEN
                UPDATE log_heads SET seq = cur_seq, hash = cur_hash WHERE site_id = s;
            END IF;
            s := r.site_id;
            SELECT h.seq, h.hash INTO cur_seq, cur_hash FROM log_heads h WHERE h.site_id = s;
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
    SELECT * FROM unnest(p_site, seqs, p_event, p_subject, p_digest, p_version, p_sha,
        p_action, p_purposes, p_services, p_gpc, p_language, p_source, p_page, p_origin,
        p_agent, p_ip, p_occurred, p_received, p_body, prevs, hashes)
        AS x (site_id, seq, event_id, subject_id, subject_digest, policy_version,
              policy_sha256, action, purposes, services, gpc, language, source, page_url,
              origin, user_agent, ip_prefix, occurred_at, received_at, body_digest,
              prev_hash, hash)
    WHERE x.seq IS NOT NULL;
    INSERT INTO consent_state (site_id, subject_id, seq, event_id, policy_version, action,
        purposes, services, gpc, recorded_at)
    SELECT DISTINCT ON (site_id, subject_id)
        site_id, subject_id, seq, event_id, policy_version, action, purposes, services,
        gpc, received_at
    FROM unnest(p_site, seqs, p_event, p_subject, p_version, p_action, p_purposes,
                p_services, p_gpc, p_received)
        AS x (site_id, seq, event_id, subject_id, policy_version, action, purposes,
              services, gpc, received_at)
    WHERE seq IS NOT NULL
    ORDER BY site_id, subject_id, seq DESC
    ON CONFLICT (site_id, subject_id) DO UPDATE
        SET seq = excluded.seq, event_id = excluded.event_id,
            policy_version = excluded.policy_version, action = excluded.action,
            purposes = excluded.purposes, services = excluded.services, gpc = excluded.gpc,
            recorded_at = excluded.recorded_at
        WHERE consent_state.seq < excluded.seq;
    RETURN outcome;
END $$;
