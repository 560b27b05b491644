-- The Merkle tree over each site's log (RFC 9162; docs/audit-log.md "Merkle tree").
-- Leaf i is the canonical JSON of the record with seq = i + 1 — the bytes the chain
-- hash covers, which hold the subject digest, not the id — so neither erasure nor a
-- retention purge changes the tree: these tables keep hashes only, no personal data.

-- Tiles in the C2SP tlog-tiles layout: tile (level, idx) holds up to 256 hashes of tree
-- level 8·level, node indexes idx·256 … idx·256+255, concatenated (32 bytes each). The
-- rightmost tile of a level grows in place; the hashes already in it never change.
CREATE TABLE log_tiles (
    site_id text NOT NULL REFERENCES sites (site_id),
    level   smallint NOT NULL CHECK (level >= 0),
    idx     bigint NOT NULL CHECK (idx >= 0),
    hashes  bytea NOT NULL
        CHECK (octet_length(hashes) BETWEEN 32 AND 8192 AND octet_length(hashes) % 32 = 0),
    PRIMARY KEY (site_id, level, idx)
);

CREATE FUNCTION cmp_guard_tiles() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER log_tiles_grow_only
    BEFORE UPDATE OR DELETE ON log_tiles
    FOR EACH ROW EXECUTE FUNCTION cmp_guard_tiles();
CREATE TRIGGER log_tiles_no_truncate
    BEFORE TRUNCATE ON log_tiles
    FOR EACH STATEMENT EXECUTE FUNCTION cmp_forbid_change();

-- Per site: how far the tree is built (leaves integrated into tiles), its root and the
-- chain hash of record `size`; and the newest signed checkpoint (head_*), replaced on
-- each signing. Moves forward only, under the tree advisory lock.
CREATE TABLE log_trees (
    site_id         text PRIMARY KEY REFERENCES sites (site_id),
    size            bigint NOT NULL CHECK (size >= 0),
    root            bytea NOT NULL CHECK (octet_length(root) = 32),
    chain_hash      text NOT NULL,
    head_size       bigint CHECK (head_size >= 1 AND head_size <= size),
    head_root       bytea,
    head_chain_hash text,
    head_note       text,
    head_signed_at  timestamptz
);

-- Signed checkpoints kept: one a minute at most while a log grows (so an auditor can
-- ask for proofs between them), and those signed on demand for a size asked for. The
-- chain hash of record `size` is NULL for the latter. Signatures are deterministic
-- (Ed25519), so a head re-signed for the same size is the same note.
CREATE TABLE log_tree_heads (
    site_id    text NOT NULL REFERENCES sites (site_id),
    size       bigint NOT NULL CHECK (size >= 1),
    root       bytea NOT NULL CHECK (octet_length(root) = 32),
    chain_hash text,
    note       text NOT NULL,
    signed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, size)
);

CREATE TRIGGER log_tree_heads_immutable
    BEFORE UPDATE OR DELETE ON log_tree_heads
    FOR EACH ROW EXECUTE FUNCTION cmp_forbid_change();
CREATE TRIGGER log_tree_heads_no_truncate
    BEFORE TRUNCATE ON log_tree_heads
    FOR EACH STATEMENT EXECUTE FUNCTION cmp_forbid_change();
