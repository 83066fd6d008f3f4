"""The data layer: every SQL statement the dialer runs, one function per statement, grouped by
what it touches (accounts, attempts, contacts, campaigns, events, dnc, loads, reporting), and
where PostgreSQL is, its schema and connections to it. Nothing outside this package writes SQL
(tests/db/test_data_layer.py)."""
