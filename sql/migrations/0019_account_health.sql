-- An account's health, shared by every process (dialer/dispatch/account_health.py): an
-- operator's pause (`dialer account pause`), and a rest after its API failed (unreachable,
-- our credentials refused, a run of answers that may or may not have placed a call). While
-- either holds, the account gets no new sends: a campaign's other accounts take its share.
ALTER TABLE accounts ADD COLUMN paused_reason text;
ALTER TABLE accounts ADD COLUMN paused_at timestamptz;
ALTER TABLE accounts ADD COLUMN down_until timestamptz;
ALTER TABLE accounts ADD COLUMN down_reason text;
ALTER TABLE accounts ADD COLUMN down_streak integer NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN last_error text;
ALTER TABLE accounts ADD COLUMN last_error_at timestamptz;
