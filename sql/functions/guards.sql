-- The guards of the append-only tables: their triggers (made by the migrations with the
-- tables) call these. The log's own guard, cmp_guard_events, reads the record's columns
-- and is generated with it (record.sql).
--
-- Why triggers: the database itself refuses what the application must never do,
-- whichever code path or hand-written statement tries it. The errors use SQLSTATE 42501
-- (insufficient_privilege).

-- Tables that never change once written (policy_versions, log_tree_heads; TRUNCATE of
-- every append-only table). History: 0001.
CREATE OR REPLACE FUNCTION cmp_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- The Merkle tree's tiles only grow: the rightmost tile of a level grows in place, and
-- the hashes already in it never change. History: 0004.
CREATE OR REPLACE FUNCTION cmp_guard_tiles() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND NEW.site_id = OLD.site_id AND NEW.level = OLD.level AND NEW.idx = OLD.idx
       AND octet_length(NEW.hashes) > octet_length(OLD.hashes)
       AND substring(NEW.hashes FROM 1 FOR octet_length(OLD.hashes)) = OLD.hashes THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'log_tiles only grow: % would change stored hashes', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- Every event id a site has stored, across all months: rows leave only with their
-- event, by retention purge (the purge sets cmp.purge = 'on' for its transaction).
-- History: 0006.
CREATE OR REPLACE FUNCTION cmp_guard_event_ids() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('cmp.purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'consent_event_ids is append-only: % only by retention purge', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
