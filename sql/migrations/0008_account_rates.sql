-- Both rates an account has, stored, so readers (metrics, the dashboard, the reconciler's
-- look-up share) never redo the limiter's arithmetic: `configured_rate_per_s` is the provider's
-- figure from dialer.toml; `paced_rate_per_s` is what the limiter paces at now (the aimed rate
-- `rate_per_s`, under the figure, times the 429 slow-down `rate_factor`). The figure may be
-- NULL while a process of an earlier version (which does not write it) registers the account.
ALTER TABLE accounts ADD COLUMN configured_rate_per_s double precision
    CHECK (configured_rate_per_s > 0);
UPDATE accounts SET configured_rate_per_s = rate_per_s / 0.95;  -- the aim of every earlier version
ALTER TABLE accounts ADD COLUMN paced_rate_per_s double precision
    GENERATED ALWAYS AS (rate_per_s * rate_factor) STORED;
