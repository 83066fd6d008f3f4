-- Consecutive 429 episodes of an account, shared by every process: the exponent of the backoff
-- when the provider gives no Retry-After. Reset once 429s have stopped for 30 seconds.
ALTER TABLE accounts ADD COLUMN throttle_streak integer NOT NULL DEFAULT 0
    CHECK (throttle_streak >= 0);
