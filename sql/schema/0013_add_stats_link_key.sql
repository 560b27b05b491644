-- A key of each site's own for its statistics-page links (HMAC-SHA256, cmp/stats_links.py):
-- replacing it (`DELETE /v1/sites/{site}/stats-links`, `cmpd stats-url --revoke`) revokes
-- every link minted before, without touching the log's signing key. 32 random bytes from
-- PostgreSQL's strong random source (gen_random_uuid: 122 random bits each), one per row.
ALTER TABLE sites
    ADD COLUMN stats_link_key bytea NOT NULL
        DEFAULT uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())
        CHECK (length(stats_link_key) >= 32);
