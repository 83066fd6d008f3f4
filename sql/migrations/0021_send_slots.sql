-- Each reserved attempt's request slot, given once by its claim on the account's clock (the
-- GCRA `tat` of accounts, advanced by the claim): the moment its create-call request may be
-- sent (dispatch.claim). Sending checks it without the account's lock; an attempt whose slot
-- passed unsent, or that a 429's hold covers, is given a new one under the lock. NULL for
-- attempts reserved before this migration: they are given one when they ask.
ALTER TABLE attempts ADD COLUMN send_at timestamptz;
