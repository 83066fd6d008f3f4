-- WAL a row costs in a table appended in time order, with its time column indexed by BRIN
-- (migration 0034's webhook_events_created), by a b-tree, and not at all.
--     psql -X -q -f bench/brin_wal.sql "$DATABASE_URL"
-- 20,000 rows first (many block ranges) and a VACUUM, as a table in use has had; then 2,000
-- rows a variant, WAL per row from pg_current_wal_lsn(). Leaves nothing behind.
SET client_min_messages = warning;
DROP TABLE IF EXISTS brin_wal;
CREATE TABLE brin_wal (id bigserial, created_at timestamptz DEFAULT clock_timestamp(), pad text);
CREATE INDEX brin_wal_brin ON brin_wal USING brin (created_at) WITH (autosummarize = on);
INSERT INTO brin_wal (pad) SELECT repeat('x', 300) FROM generate_series(1, 20000);
VACUUM brin_wal;
SELECT pg_current_wal_lsn() AS start \gset
INSERT INTO brin_wal (pad) SELECT repeat('x', 300) FROM generate_series(1, 2000);
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), :'start') / 2000 AS brin_bytes_a_row \gset
DROP INDEX brin_wal_brin;
CREATE INDEX brin_wal_btree ON brin_wal (created_at);
SELECT pg_current_wal_lsn() AS start \gset
INSERT INTO brin_wal (pad) SELECT repeat('x', 300) FROM generate_series(1, 2000);
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), :'start') / 2000 AS btree_bytes_a_row \gset
DROP INDEX brin_wal_btree;
SELECT pg_current_wal_lsn() AS start \gset
INSERT INTO brin_wal (pad) SELECT repeat('x', 300) FROM generate_series(1, 2000);
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), :'start') / 2000 AS none_bytes_a_row \gset
SELECT round(:brin_bytes_a_row, 1) AS brin, round(:btree_bytes_a_row, 1) AS btree,
       round(:none_bytes_a_row, 1) AS no_index;
DROP TABLE brin_wal;
