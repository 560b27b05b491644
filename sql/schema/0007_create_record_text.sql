-- The record as the database writes it, in one place: the export, the Merkle tree's
-- leaves and receipts all read `cmp_record_text`, and every UTC timestamp the server
-- answers with is `cmp_utc_text`.
--
-- Why: the same string concatenation was written three times in the queries and the
-- timestamp pattern twelve times; one copy drifting from the others (or from the record
-- the server hashed) would only show in an export that no longer verifies.
-- cmp.audit.record declares the record; tests/store/test_record.py checks these
-- functions against its canonical JSON, byte for byte, on records stored through the
-- real write path.
--
-- Both are plain SQL functions that the planner inlines (no call per row: the plan is
-- the concatenation itself); they must stay LANGUAGE sql, STABLE and not STRICT for that.

-- RFC 3339 UTC with exactly six fraction digits and `Z` (cmp.canonical.utc_text).
CREATE FUNCTION cmp_utc_text(p_at timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- A record's canonical JSON (keys sorted, no whitespace), in five parts around the two
-- choice maps, which the caller puts in canonical form (jsonb writes them with spaces
-- and its own key order; a log holds only a handful of distinct ones, which the caller
-- caches): head || canonical(purposes) || middle || canonical(services) || tail.
-- With p_links, an export row: the record plus prev_hash, hash and subject_id (not
-- hashed), each at its place in key order.
CREATE TYPE cmp_record_parts AS (
    head text, purposes text, middle text, services text, tail text
);

CREATE FUNCTION cmp_record_text(e consent_events, p_links boolean) RETURNS cmp_record_parts
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT ROW(
        '{"action":' || coalesce(to_json(e.action)::text, 'null')
        || ',"event_id":' || coalesce(to_json(e.event_id::text)::text, 'null')
        || ',"gpc":' || coalesce(e.gpc::text, 'null')
        || CASE WHEN p_links
               THEN ',"hash":' || coalesce(to_json(e.hash)::text, 'null') ELSE '' END
        || ',"ip_prefix":' || coalesce(to_json(e.ip_prefix)::text, 'null')
        || ',"language":' || coalesce(to_json(e.language)::text, 'null')
        || ',"occurred_at":' || coalesce('"' || cmp_utc_text(e.occurred_at) || '"', 'null')
        || ',"origin":' || coalesce(to_json(e.origin)::text, 'null')
        || ',"page_url":' || coalesce(to_json(e.page_url)::text, 'null')
        || ',"policy_sha256":' || coalesce(to_json(e.policy_sha256)::text, 'null')
        || ',"policy_version":' || coalesce(e.policy_version::text, 'null')
        || CASE WHEN p_links
               THEN ',"prev_hash":' || coalesce(to_json(e.prev_hash)::text, 'null') ELSE '' END
        || ',"purposes":',
        e.purposes::text,
        ',"received_at":' || coalesce('"' || cmp_utc_text(e.received_at) || '"', 'null')
        || ',"seq":' || coalesce(e.seq::text, 'null')
        || ',"services":',
        e.services::text,
        ',"site_id":' || coalesce(to_json(e.site_id)::text, 'null')
        || ',"source":' || coalesce(to_json(e.source)::text, 'null')
        || ',"subject_digest":' || coalesce(to_json(e.subject_digest)::text, 'null')
        || CASE WHEN p_links
               THEN ',"subject_id":' || coalesce(to_json(e.subject_id)::text, 'null') ELSE '' END
        || ',"user_agent":' || coalesce(to_json(e.user_agent)::text, 'null')
        || ',"v":1}'
    )::cmp_record_parts
$$;
