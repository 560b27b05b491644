-- Impressions (docs/api.md): their daily partitions, the counting insert, and the drop of
-- days rolled up. History: 0016, 0018 (the visitor's rule), 0020 (provisional counts).

-- The partition of UTC day p_day; created when missing (cmp_partition, partitions.sql).
CREATE OR REPLACE FUNCTION cmp_impression_partition(p_day date) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    RETURN cmp_partition('impressions', 'impressions_' || to_char(p_day, 'YYYYMMDD'),
                         p_day::text, (p_day + 1)::text);
END $$;

-- Partitions for today and the p_days days after it; returns how many were new.
CREATE OR REPLACE FUNCTION cmp_impression_partitions_ahead(p_days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d date;
    made integer := 0;
BEGIN
    FOR d IN SELECT generate_series((now() AT TIME ZONE 'UTC')::date,
                                    (now() AT TIME ZONE 'UTC')::date + p_days, '1 day')::date
    LOOP
        IF to_regclass('impressions_' || to_char(d, 'YYYYMMDD')) IS NULL THEN
            PERFORM cmp_impression_partition(d);
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END $$;

-- Count a batch: each impression once by (site, impression id) over its day and the day
-- before (a retry from the banner's queue comes within a day), the first of a batch's
-- repeats wins. Returns the keys counted now; the rest were counted before.
--
-- Only key probes: PL/pgSQL keeps the statement's plan for the session, and the day's
-- partition starts empty at midnight; a plan made then joined a scan of the whole day
-- to every batch until autovacuum analyzed it (tests/store/test_plans.py). A batch is
-- small beside a day, so probing its keys is right at every size.
CREATE OR REPLACE FUNCTION cmp_count_impressions(p_rows cmp_new_impression[])
RETURNS TABLE (site_id text, impression_id uuid) LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    d date;
BEGIN
    -- Made ahead by maintenance; this is the fallback that never refuses a showing.
    FOR d IN SELECT DISTINCT (k.received_at AT TIME ZONE 'UTC')::date FROM unnest(p_rows) AS k
    LOOP
        IF to_regclass('impressions_' || to_char(d, 'YYYYMMDD')) IS NULL THEN
            PERFORM cmp_impression_partition(d);
        END IF;
    END LOOP;
    RETURN QUERY
    INSERT INTO impressions AS i (site_id, day, impression_id, visitor, policy_version,
                                  surface, variant, received_at, rule)
    SELECT k.site_id, (k.received_at AT TIME ZONE 'UTC')::date, k.impression_id, k.visitor,
           k.policy_version, k.surface, k.variant, k.received_at, k.rule
    FROM unnest(p_rows) AS k
    WHERE NOT EXISTS (
        SELECT 1 FROM impressions y
        WHERE y.site_id = k.site_id AND y.impression_id = k.impression_id
          AND y.day = (k.received_at AT TIME ZONE 'UTC')::date - 1)
    ON CONFLICT DO NOTHING
    RETURNING i.site_id, i.impression_id;
END $$;

-- The raw impressions of days [p_from, p_to) (of site p_site, or of every site when it is
-- null) counted per site and day, at the levels the
-- stats read: per rule, variant and surface; every surface of a rule and variant (surface
-- ''); every variant of a rule, every rule of a variant, and the whole site (rule or
-- variant '*'). Each level counts a visitor once per day, so none is a sum of others.
-- History: 0018 (per rule, the '*' levels).
CREATE OR REPLACE FUNCTION cmp_impression_counts(p_site text, p_from date, p_to date)
RETURNS TABLE (site_id text, day date, rule text, variant text, surface text,
               impressions bigint, visitors bigint)
LANGUAGE sql STABLE AS $$
    SELECT i.site_id, i.day,
           CASE WHEN grouping(i.rule) = 1 THEN '*' ELSE i.rule END,
           CASE WHEN grouping(i.variant) = 1 THEN '*' ELSE i.variant END,
           CASE WHEN grouping(i.surface) = 1 THEN '' ELSE i.surface END,
           count(*), count(DISTINCT i.visitor)
    FROM impressions i
    WHERE i.day >= p_from AND i.day < p_to AND (p_site IS NULL OR i.site_id = p_site)
    GROUP BY GROUPING SETS ((i.site_id, i.day, i.rule, i.variant, i.surface),
                            (i.site_id, i.day, i.rule, i.variant),
                            (i.site_id, i.day, i.rule), (i.site_id, i.day, i.variant),
                            (i.site_id, i.day))
$$;

-- Roll up closed day p_day (every site) into impression_days, once; false when it was
-- rolled up already (by another process, or an earlier run).
CREATE OR REPLACE FUNCTION cmp_roll_up_impressions(p_day date) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO impression_rollup (day) VALUES (p_day) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO impression_days (site_id, day, rule, variant, surface, impressions, visitors)
    SELECT c.site_id, p_day, c.rule, c.variant, c.surface, c.impressions, c.visitors
    FROM cmp_impression_counts(NULL, p_day, p_day + 1) AS c;
    -- The day's provisional counts (0020) are superseded: no reader takes them any more.
    DELETE FROM impression_provisional WHERE day = p_day;
    RETURN true;
END $$;

-- Drop the partitions of rolled-up days before p_before; returns their names. A day
-- whose drop waited longer than p_wait for the table's lock (ingest holds it in share
-- mode) is left for the next run, so that ingest never queues behind it.
CREATE OR REPLACE FUNCTION cmp_drop_impression_days(p_before date, p_wait text)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    part text;
    saved text := current_setting('lock_timeout');
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
        WHERE h.inhparent = 'impressions'::regclass
          AND c.relname ~ '^impressions_[0-9]{8}$'
          AND to_date(substr(c.relname, 13), 'YYYYMMDD') < p_before
          AND EXISTS (SELECT 1 FROM impression_rollup r
                      WHERE r.day = to_date(substr(c.relname, 13), 'YYYYMMDD'))
        ORDER BY c.relname
    LOOP
        PERFORM set_config('lock_timeout', p_wait, true);
        BEGIN
            EXECUTE format('DROP TABLE %I', part);
        EXCEPTION WHEN lock_not_available THEN
            PERFORM set_config('lock_timeout', saved, true);
            RETURN;
        END;
        PERFORM set_config('lock_timeout', saved, true);
        RETURN NEXT part;
    END LOOP;
END $$;
