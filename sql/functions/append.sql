-- cmp_append: store a group-committed batch of events in one statement.
--
-- It locks the chain heads of the batch's sites (in site order: two processes locking
-- the same sites cannot deadlock), tells retries (same body digest: a duplicate) from
-- reused event ids (another body: a conflict, and the rest of that request is skipped),
-- gives each new event its site's next seq and chain hash -- sha256(prev_hash || the
-- record's canonical JSON, which the caller made with seq spliced in: head || seq ||
-- tail) -- inserts the events and their ids, and upserts the subjects' states. Returns
-- one outcome per row: new, duplicate, conflict or skipped.
--
-- History: 0002 (arrays), 0003 (rows), 0006 (partitioned log, ids table), 0008 (the
-- retry check planned at each flush), 0012 (record version 2's columns, over rows of
-- cmp_new_event_v2; 0008's overload over cmp_new_event stays for the previous release's
-- processes during a rolling upgrade), 0015 (the state's rule), then the retry check as
-- cmp_stored_digests (a kept plan of key probes instead of a plan at each flush).
--
-- That overload, cmp_append(cmp_new_event[]), is the one function not defined here: it
-- is frozen as sql/schema/0008_append_probe_ids.sql left it (the previous release's
-- processes call it while they are replaced), and a later migration drops it.

-- The batch's rows whose (site, event id) is stored already, with both body digests.
-- Only key probes: PL/pgSQL keeps the statement's plan for the session, and one made
-- while the ids table was small must not scan it whole once it has grown; a batch is
-- small beside the table at every size. (Planned at each flush instead, as 0008 did,
-- it cost a parse and a plan per flush: loadtest/README.md.)
CREATE OR REPLACE FUNCTION cmp_stored_digests(p_rows cmp_new_event_v2[])
RETURNS TABLE (i bigint, req integer, sent bytea, stored bytea) LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    RETURN QUERY
    SELECT k.ordinality, k.req, k.body_digest, e.body_digest
    FROM unnest(p_rows) WITH ORDINALITY AS k
    JOIN consent_event_ids e ON e.site_id = k.site_id AND e.event_id = k.event_id;
END $$;

CREATE OR REPLACE FUNCTION cmp_append(p_rows cmp_new_event_v2[]) RETURNS text[] LANGUAGE plpgsql AS $$
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
    FOR r IN SELECT d.i, d.req, d.sent, d.stored FROM cmp_stored_digests(p_rows) AS d LOOP
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
    -- Every stored column, generated from the record's declaration (sql/functions/record.sql).
    PERFORM cmp_insert_events(p_rows, seqs, prevs, hashes);
    INSERT INTO consent_event_ids (site_id, event_id, body_digest)
    SELECT k.site_id, k.event_id, k.body_digest
    FROM unnest(p_rows) WITH ORDINALITY AS k
    JOIN unnest(seqs) WITH ORDINALITY AS c (seq, i) ON c.i = k.ordinality
    WHERE c.seq IS NOT NULL;
    INSERT INTO consent_state (site_id, subject_id, seq, event_id, policy_version, action,
        purposes, services, gpc, recorded_at, rule)
    SELECT DISTINCT ON (k.site_id, k.subject_id)
        k.site_id, k.subject_id, c.seq, k.event_id, k.policy_version, k.action,
        k.purposes::jsonb, k.services::jsonb, k.gpc, k.received_at, k.rule
    FROM unnest(p_rows) WITH ORDINALITY AS k
    JOIN unnest(seqs) WITH ORDINALITY AS c (seq, i) ON c.i = k.ordinality
    WHERE c.seq IS NOT NULL
    ORDER BY k.site_id, k.subject_id, c.seq DESC
    ON CONFLICT (site_id, subject_id) DO UPDATE
        SET seq = excluded.seq, event_id = excluded.event_id,
            policy_version = excluded.policy_version, action = excluded.action,
            purposes = excluded.purposes, services = excluded.services, gpc = excluded.gpc,
            recorded_at = excluded.recorded_at, rule = excluded.rule
        WHERE consent_state.seq < excluded.seq;
    RETURN outcome;
END $$;
