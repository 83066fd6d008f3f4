-- An account's settled attempts, newest first (issue 16). The reconciler's idle-rate scan
-- (db.attempts._OVERDUE) takes the typical ring and talk lengths from the account's last
-- TYPICAL_OVER settled calls, ordered by id. No index led by the account held closed attempts,
-- so PostgreSQL read attempts backwards by id, or whole: for an account whose calls are few
-- among another's many, every scan read the table (1,000,105 attempts, 100 of them the small
-- account's: a sequential scan, 104-133 ms a scan, each reconciler round, each such account).
-- An entry is written once per attempt, when it settles (its close already writes a new
-- entry into the other indexes).
CREATE INDEX attempts_settled_by_account ON attempts (account, id) WHERE outcome IS NOT NULL;
