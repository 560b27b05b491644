-- A CSV cell that no spreadsheet reads as a formula (OWASP "CSV Injection").
--
-- Why: the CSV export is written by COPY, and a public `source` or User-Agent such as
-- `=HYPERLINK(…)` or `@SUM(…)` ran as a formula in the auditor's spreadsheet. A value
-- that starts with `=`, `+`, `-`, `@`, tab, carriage return or line feed — or with the
-- full-width `＝`, `＋`, `－`, `＠`, which some spreadsheet input reads as the ASCII
-- ones — gets a single quote in front; export_csv also quotes every such column (COPY
-- FORCE_QUOTE). Only the CSV select calls this: the JSONL export and the hashed
-- record keep the exact value (docs/audit-log.md, Exports).
--
-- A plain SQL function, so the planner inlines it (it must stay LANGUAGE sql and not
-- STRICT for that, as cmp_record_text); NULL stays NULL.
CREATE OR REPLACE FUNCTION cmp_csv_cell(p_text text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN left(p_text, 1) = ANY (ARRAY[
            '=', '+', '-', '@', E'\t', E'\r', E'\n',
            U&'\FF1D', U&'\FF0B', U&'\FF0D', U&'\FF20'
        ])
        THEN '''' || p_text
        ELSE p_text
    END
$$;
