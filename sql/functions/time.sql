-- Every UTC timestamp the server answers with, and the record's, in one place.
--
-- Why: the timestamp pattern was written twelve times in the queries; one copy
-- drifting from the others (or from the record the server hashed) would only show in
-- an export that no longer verifies. tests/store/test_record.py checks it against
-- cmp.canonical.utc_text on records stored through the real write path.
--
-- A plain SQL function that the planner inlines (no call per row: the plan is the
-- expression itself); it must stay LANGUAGE sql, STABLE and not STRICT for that.

-- RFC 3339 UTC with exactly six fraction digits and `Z` (cmp.canonical.utc_text).
-- History: 0007.
CREATE OR REPLACE FUNCTION cmp_utc_text(p_at timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;
