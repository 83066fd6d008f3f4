-- Where the next claim of an account starts looking for free channel slots (issue 16, items 2
-- and 6): the slot after the last one it gave. A claim used to fetch every live attempt of its
-- account as a row and walk all `channels` slots; it now reads the live attempts as one row
-- (db.attempts.free_channels) and walks the ring from here only until it has the slots it may
-- give (dispatch.limiter.free_channel_slots). Calls end in about the order they began, so the
-- slots after the cursor are the oldest given and most often free again. Written under the
-- account's row lock, with the limiter's state.
ALTER TABLE accounts ADD COLUMN next_slot integer NOT NULL DEFAULT 0 CHECK (next_slot >= 0);
