-- An account's live attempts (a claim's count of channels in use, a free slot, the account's
-- glance and status, the reconciler's look-ups) are read through attempts_one_call_per_slot,
-- whose first key is the account. Since 0031 the planner could also answer `account = $1 AND
-- live` from attempts_one_live_per_contact, which holds the live attempts of every account,
-- and often chose it (its rows lie in heap order), reading every account's live calls to
-- keep one's: with four accounts of 800 live calls, 3,200 rows read for 800, three times the
-- time. That index serves look-ups by contact only: its predicate now also names contact_id
-- (never NULL, so what it keeps unique is the same), which a look-up by contact implies and
-- one by account does not. tests/db/test_indexes.py reads the plans.
DROP INDEX attempts_one_live_per_contact;
CREATE UNIQUE INDEX attempts_one_live_per_contact ON attempts (contact_id)
    WHERE live AND contact_id IS NOT NULL;
