-- A month of the log leaves in two transactions: detached in the purge's, dropped after.
--
-- Detaching needs the log's ACCESS EXCLUSIVE lock, held to the end of the transaction,
-- and ingest queues behind it. 0006 and 0009 also dropped the month in that transaction,
-- so its commit, which removes the month's files (their cost grows with the month), ran
-- under the lock (loadtest/README.md, at size). Now the purge's transaction only
-- detaches; the detached table is dropped in a transaction of its own, which locks that
-- table alone. A table left detached by a crash in between is dropped by the next purge
-- (cmp_drop_detached_months), so no purged record outlives it by more than a purge.

DROP FUNCTION cmp_drop_event_partition(text, text);

-- Detach month p_part, its ids deleted by key first (while ingest still runs beside
-- this); false when the log's lock did not come within p_wait (nothing happens then).
CREATE FUNCTION cmp_detach_event_partition(p_part text, p_wait text) RETURNS boolean
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
CREATE FUNCTION cmp_drop_detached_months() RETURNS SETOF text LANGUAGE plpgsql AS $$
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
