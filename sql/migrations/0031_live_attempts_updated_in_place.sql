-- An attempt's moves between live states (accepted -> ringing -> in-progress, a look-up's
-- mark) become HOT updates: the new row version goes on the same page and no index gets an
-- entry. Before, `state` was a key of attempts_live and attempts_campaign and in the predicate
-- of three partial indexes, so every change of state wrote a new entry into each of the nine
-- indexes (about 70 bytes of WAL each; bench/statements.py: b-tree inserts were half of a
-- settled call's WAL).
--
-- `live` says what the partial indexes need to know: whether the attempt holds a channel. It is
-- computed by PostgreSQL from `state` (the same list as dialer.policy.states.LIVE; a test
-- compares them), so no writer can set it wrong, and it changes only when an attempt is reserved
-- or closed (or an `unknown` one re-opened). PostgreSQL makes an update HOT when no indexed
-- column's value changes; `state` itself is then in no index.
--
-- Adding a stored generated column rewrites the table once, under its exclusive lock.
ALTER TABLE attempts ADD COLUMN live boolean NOT NULL
    GENERATED ALWAYS AS (state IN ('reserved', 'dialing', 'accepted', 'ringing', 'in-progress'))
    STORED;

-- The live attempts of an account (claims, slots, look-ups, gauges) are read through the
-- unique slot index, which holds every live attempt (a re-opened one with a NULL slot): the
-- index by (account, state, settle_by) was one entry more on every write, for scans of at
-- most an account's channels.
DROP INDEX attempts_live;
DROP INDEX attempts_one_call_per_slot;
CREATE UNIQUE INDEX attempts_one_call_per_slot ON attempts (account, slot) WHERE live;
DROP INDEX attempts_one_live_per_contact;
CREATE UNIQUE INDEX attempts_one_live_per_contact ON attempts (contact_id) WHERE live;
DROP INDEX attempts_campaign;
CREATE INDEX attempts_campaign ON attempts (campaign_id, live);

-- Room on each page for the new versions of the rows written there: a claim inserts its
-- attempts together, and their updates follow within minutes. Old versions of a HOT chain are
-- pruned on the page as it is read. (New pages only; existing ones fill as they are freed.)
ALTER TABLE attempts SET (fillfactor = 75);
