-- Where the next claim of an account starts looking for free channel slots (issue 16, items 2
-- and 6). A claim used to read every live attempt of its account to find the free slots: up to
-- `channels` rows (10,000) per claim, so the cost of each claim grew with the calls in flight.
-- It now probes the slots one by one through attempts_one_call_per_slot, starting after the
-- last slot it gave, around the ring: calls end in about the order they began, so the slots
-- after the cursor are the oldest given and most often free again. Written under the account's
-- row lock, with the limiter's state.
ALTER TABLE accounts ADD COLUMN next_slot integer NOT NULL DEFAULT 0 CHECK (next_slot >= 0);
