-- name: select_migrations_table_exists
-- Whether the database has been migrated at all.
SELECT to_regclass('schema_migrations') IS NOT NULL;

-- name: select_applied_migrations
-- The numbers of the migrations applied, in order.
SELECT version FROM schema_migrations ORDER BY version;

-- name: create_migrations_table
-- The runner's own table, made before the first migration.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: insert_applied_migration
-- Record one migration, in the transaction that applied it.
INSERT INTO schema_migrations (version, name) VALUES ($1, $2);

-- name: create_functions_table
-- What each file of sql/functions/ held when it was last applied.
CREATE TABLE IF NOT EXISTS schema_functions (
    name       text PRIMARY KEY,
    sha256     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: select_functions_table_exists
-- Whether function files were ever applied.
SELECT to_regclass('schema_functions') IS NOT NULL;

-- name: select_function_digests
-- The digest of every function file as last applied.
SELECT name, sha256 FROM schema_functions;

-- name: set_local_no_body_checks
-- A function file's bodies are checked when called, not when created: a LANGUAGE sql
-- body may call a function that a later file defines.
SET LOCAL check_function_bodies = off;

-- name: upsert_function_digest
-- Record one function file, in the transaction that applied it.
INSERT INTO schema_functions (name, sha256) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET sha256 = excluded.sha256, applied_at = now();
