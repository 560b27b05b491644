-- The log's monthly partitions: made ahead, checked for expiry, detached and dropped.
--
-- consent_events is range-partitioned by the server's received_at in UTC months
-- (0006_partition_events.sql): retention drops a month instead of deleting it row by
-- row, and every index stays the size of one month. There is no DEFAULT partition (it
-- would have to be scanned on every attach and blocks detaching); instead partitions
-- are made ahead (`cmpd migrate`, the maintenance task) and, as the last resort, by
-- cmp_append itself for a month that has none, so an event is never refused for want
-- of a partition.

-- Partition p_part of p_parent for [p_from, p_to), created when missing; the one way both
-- partitioned tables (the log's months, the impressions' days) get a partition. Creation
-- locks the parent in SHARE UPDATE EXCLUSIVE mode only (it does not wait for readers or
-- writers, but one creator at a time) and attaches a new table, instead of CREATE …
-- PARTITION OF, which would take an ACCESS EXCLUSIVE lock on the whole table.
CREATE OR REPLACE FUNCTION cmp_partition(p_parent regclass, p_part text, p_from text, p_to text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass(p_part) IS NOT NULL THEN
        RETURN p_part;
    END IF;
    EXECUTE format('LOCK TABLE %s IN SHARE UPDATE EXCLUSIVE MODE', p_parent);
    -- Taking the lock read the catalog afresh: another creator may have just done it.
    IF to_regclass(p_part) IS NULL THEN
        EXECUTE format('CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       p_part, p_parent);
        EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       p_parent, p_part, p_from, p_to);
    END IF;
    RETURN p_part;
END $$;

-- The partition for the UTC month of p_at; created when missing. History: 0006, then
-- cmp_partition's body (the same steps, shared with the impressions' days).
CREATE OR REPLACE FUNCTION cmp_event_partition(p_at timestamptz) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    lo timestamp := date_trunc('month', p_at AT TIME ZONE 'UTC');
BEGIN
    RETURN cmp_partition('consent_events', 'consent_events_' || to_char(lo, 'YYYY_MM'),
                         (lo AT TIME ZONE 'UTC')::text,
                         ((lo + interval '1 month') AT TIME ZONE 'UTC')::text);
END $$;

-- Partitions from the month of p_from through p_months months after now().
-- History: 0006.
CREATE OR REPLACE FUNCTION cmp_event_partitions_ahead(p_from timestamptz, p_months integer)
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

-- Retention by the month: does every row of partition p_part lie at or before its
-- site's purge cut (p_sites[i] through seq p_cuts[i])? One index probe per site.
-- History: 0006.
CREATE OR REPLACE FUNCTION cmp_event_partition_expired(p_part text, p_sites text[], p_cuts bigint[])
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

-- A month of the log leaves in two transactions: detached in the purge's, dropped after.
--
-- Detaching needs the log's ACCESS EXCLUSIVE lock, held to the end of the transaction,
-- and ingest queues behind it. Dropping the month in that transaction too (0006, 0009:
-- cmp_drop_event_partition) ran its commit, which removes the month's files (their
-- cost grows with the month), under the lock (loadtest/README.md, at size). So the
-- purge's transaction only detaches; the detached table is dropped in a transaction of
-- its own, which locks that table alone. A table left detached by a crash in between is
-- dropped by the next purge (cmp_drop_detached_months), so no purged record outlives it
-- by more than a purge.

-- Detach month p_part, its ids deleted by key first (while ingest still runs beside
-- this); false when the log's lock did not come within p_wait (nothing happens then, so
-- that the caller deletes the rows instead of making ingest queue behind the lock).
-- The ids are reached from the month's rows, a materialised CTE held to nested loops by
-- the SET clauses: one key probe each, not a hash join over the whole ids table
-- (0009_purge_by_key.sql). History: 0006, 0009, 0011.
CREATE OR REPLACE FUNCTION cmp_detach_event_partition(p_part text, p_wait text) RETURNS boolean
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    saved text := current_setting('lock_timeout');
BEGIN
    PERFORM set_config('lock_timeout', p_wait, true);
    BEGIN
        EXECUTE format('WITH e AS MATERIALIZED (SELECT site_id, event_id FROM %I)'
                       ' DELETE FROM consent_event_ids i USING e'
                       ' WHERE i.site_id = e.site_id AND i.event_id = e.event_id', p_part);
        EXECUTE format('ALTER TABLE consent_events DETACH PARTITION %I', p_part);
    EXCEPTION WHEN lock_not_available THEN
        PERFORM set_config('lock_timeout', saved, true);
        RETURN false;
    END;
    PERFORM set_config('lock_timeout', saved, true);
    RETURN true;
END $$;

-- Drop every month of the log that is detached (by a purge); returns their names. Run
-- by every purge, in every process: a table another one dropped meanwhile is skipped.
-- History: 0011.
CREATE OR REPLACE FUNCTION cmp_drop_detached_months() RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    part text;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_class c
        WHERE c.relnamespace = (SELECT relnamespace FROM pg_class
                                WHERE oid = 'consent_events'::regclass)
          AND c.relname ~ '^consent_events_[0-9]{4}_[0-9]{2}$'
          AND c.relkind = 'r' AND NOT c.relispartition
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I', part);  -- another process's purge
        RETURN NEXT part;
    END LOOP;
END $$;
