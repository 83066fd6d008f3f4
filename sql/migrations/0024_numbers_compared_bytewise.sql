-- Phone numbers are compared byte by byte: the "C" collation on every column that holds an
-- E.164 number ('+' and digits, where every collation orders and equates them alike).
-- Under a database's linguistic collation (en_US.UTF-8, or C.UTF-8 from libc) each comparison
-- goes through strcoll; contacts' unique (phone_e164, campaign_id) index makes about twenty of
-- them for every contact a load inserts, and that index is a third of PostgreSQL's share of a
-- load (issue 16, item 1; bench/copy_parts.py). The four columns change together so that a
-- join of one with another compares in one collation and can use either side's index.
--
-- Changing a column's collation rewrites no table, but it rebuilds the indexes on the column,
-- under an exclusive lock: on a big database this migration takes as long as those builds.
-- The two views that read these columns are dropped and made again from their own definitions.
CREATE TEMP TABLE numbers_bytewise_views ON COMMIT DROP AS
SELECT c.relname AS name, pg_get_viewdef(c.oid) AS definition
FROM pg_class c
WHERE c.relkind = 'v'
  AND c.relnamespace = current_schema()::regnamespace
  AND c.relname IN ('attempt_log', 'contact_results');

DROP VIEW attempt_log, contact_results;

ALTER TABLE contacts ALTER phone_e164 TYPE text COLLATE "C";
ALTER TABLE attempts ALTER phone_e164 TYPE text COLLATE "C";
ALTER TABLE dnc ALTER phone_e164 TYPE text COLLATE "C";
ALTER TABLE consent_events ALTER phone_e164 TYPE text COLLATE "C";

DO $$
DECLARE
    saved record;
BEGIN
    FOR saved IN SELECT name, definition FROM numbers_bytewise_views ORDER BY name LOOP
        EXECUTE format('CREATE VIEW %I AS %s', saved.name, saved.definition);
    END LOOP;
END
$$;
