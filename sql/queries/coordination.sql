-- name: try_lock
-- Take a job's advisory lock for this transaction, or false at once when another process has it.
SELECT pg_try_advisory_xact_lock($1);

-- name: wait_lock
-- Take a job's advisory lock for this transaction, waiting for it.
SELECT pg_advisory_xact_lock($1);

-- name: lock_session
-- Take an advisory lock for the session, waiting for it (migrations: across transactions).
SELECT pg_advisory_lock($1);

-- name: unlock_session
-- Give back a session advisory lock.
SELECT pg_advisory_unlock($1);

-- name: notify_change
-- Tell every process to drop its cached copy of a site, its policy heads or a key.
SELECT pg_notify($1, $2);
