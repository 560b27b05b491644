-- Retention purge: the records through a site's cut, their ids and the states they
-- proved. (A month wholly past every site's cut is detached instead: partitions.sql.)
--
-- Retention reads what it removes, not the rest of the log. Both the ids and the states
-- are reached from the purged records themselves: one key probe of consent_event_ids
-- and one of consent_state per record, the joins held to nested loops (the functions'
-- SET clauses) whose outer side is the purged rows (a materialised CTE, which has no
-- index to be probed by a scan of the other table), so a purge's cost follows what it
-- removes. 0006 deleted a month's ids with a join that the planner makes a hash join
-- over the whole of consent_event_ids once that table is large, and found the states
-- it removed by seq, which consent_state has no index on (a scan of all of the site's
-- states).
-- The callers set cmp.purge for their transaction (the guards on the log and the ids).

-- A site's records through seq p_seq received from p_from on (older months are dropped
-- whole), with their ids and the states they proved; returns (records, states).
-- History: 0009.
CREATE OR REPLACE FUNCTION cmp_purge_records(p_site text, p_seq bigint, p_from timestamptz)
RETURNS TABLE (events bigint, states bigint) LANGUAGE sql
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
    WITH gone AS (
        DELETE FROM consent_events
        WHERE site_id = p_site AND seq <= p_seq AND received_at >= p_from
        RETURNING site_id, event_id, subject_id, seq
    ), ids AS (
        DELETE FROM consent_event_ids i USING gone
        WHERE i.site_id = gone.site_id AND i.event_id = gone.event_id
    ), proved AS (
        DELETE FROM consent_state s USING gone
        WHERE s.site_id = gone.site_id AND s.subject_id = gone.subject_id
          AND s.seq = gone.seq
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM proved);
$$;

-- The states proved by the records of partition p_part (a month about to be dropped);
-- returns the count per site. A state that a newer record has replaced meanwhile no
-- longer matches its old seq and stays. History: 0009.
CREATE OR REPLACE FUNCTION cmp_purge_month_states(p_part text)
RETURNS TABLE (site_id text, states bigint) LANGUAGE plpgsql
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH e AS MATERIALIZED (SELECT site_id, subject_id, seq FROM %I),'
        ' proved AS ('
        '  DELETE FROM consent_state s USING e'
        '  WHERE s.site_id = e.site_id AND s.subject_id = e.subject_id AND s.seq = e.seq'
        '  RETURNING s.site_id)'
        ' SELECT site_id, count(*) FROM proved GROUP BY site_id', p_part);
END $$;
