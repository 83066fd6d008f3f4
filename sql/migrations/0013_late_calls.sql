-- How late an account's provider (or a front before it) may place a call whose create request
-- got no answer (dialer.toml `late_placement`, default 5 minutes): an attempt sent with no call
-- id back keeps its channel until then, and its contact is not dialed again before it.
ALTER TABLE accounts ADD COLUMN late_placement_s double precision NOT NULL DEFAULT 300
    CHECK (late_placement_s > 0);

-- When a live attempt was last asked about with the account's idle rate (dialer/policy/lookups.py):
-- every reconciling process asks about one call at most once per IDLE_REASK.
ALTER TABLE attempts ADD COLUMN looked_up_at timestamptz;

-- This database's own identity: webhook ids are `msg_<install>_<event id>`, unique across
-- installs (two databases both had a `msg_1`, and a receiver dropping repeats by id lost one).
CREATE TABLE dialer_install (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    id         text NOT NULL DEFAULT replace(gen_random_uuid()::text, '-', ''),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO dialer_install DEFAULT VALUES;

-- A webhook endpoint is kept subscribed by the processes that have it in their dialer.toml
-- (each refreshes `seen_at` every minute); one no process has named for an hour was removed:
-- no event is written for it any more, and its waiting deliveries and the row go.
ALTER TABLE webhook_endpoints ADD COLUMN seen_at timestamptz NOT NULL DEFAULT now();

-- A provider's 429 that holds the account (Retry-After): until when every process waits, and
-- what the provider asked for (a Retry-After past the limiter's cap is waited out at the cap).
-- Shown on the dashboard, in `campaign show` and /metrics, and logged each minute while it lasts.
ALTER TABLE accounts ADD COLUMN held_until timestamptz;
ALTER TABLE accounts ADD COLUMN held_asked_s double precision;
