-- dialer schema: the tables every later feature reads and writes.
-- Column names of campaigns, contacts, attempts, call_events, dnc and load_rejects are a contract
-- for users' own SQL reports: add columns freely, never rename or drop these.

-- One row per provider account. Holds the limiter state shared by every process (GCRA theoretical
-- arrival time `tat`, the 429 slow-down factor) so that N workers together stay within the limits.
CREATE TABLE accounts (
    name          text PRIMARY KEY,
    kind          text NOT NULL,
    rate_per_s    double precision NOT NULL CHECK (rate_per_s > 0),
    rate_factor   double precision NOT NULL DEFAULT 1 CHECK (rate_factor > 0 AND rate_factor <= 1),
    channels      integer NOT NULL CHECK (channels > 0),
    tat           timestamptz NOT NULL DEFAULT now(),
    last_429_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaigns (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    account       text NOT NULL,
    status        text NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'paused', 'canceled', 'completed')),
    status_reason text,
    spec          jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contacts (
    id              bigserial PRIMARY KEY,
    -- No foreign key to campaigns: contacts are only ever created by the load transaction that
    -- creates or locks their campaign, and a per-row RI check costs a third of a 1M-row load.
    campaign_id     bigint NOT NULL,
    row_no          integer NOT NULL,
    phone_e164      text NOT NULL CHECK (phone_e164 ~ '^\+[1-9][0-9]{5,14}$'),
    name            text,
    timezone        text,
    priority        integer NOT NULL DEFAULT 0,
    fields          jsonb NOT NULL DEFAULT '{}'::jsonb,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'dialing', 'done', 'exhausted', 'failed',
                                     'suppressed', 'canceled')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz,
    last_outcome    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- One contact per number per campaign. Phone first, so the same index also finds a number
    -- in every campaign (do-not-call updates, per-number limits).
    CONSTRAINT contacts_one_per_number UNIQUE (phone_e164, campaign_id)
);
-- The leasing order of the design: priority, then fewest attempts, then due time, then load
-- order (id: ascending ids also keep this index append-only during a bulk load).
CREATE INDEX contacts_due ON contacts (campaign_id, priority DESC, attempts, next_attempt_at, id)
    WHERE state = 'pending';

CREATE TABLE attempts (
    id               bigserial PRIMARY KEY,
    contact_id       bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    campaign_id      bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    account          text NOT NULL,
    attempt_no       integer NOT NULL CHECK (attempt_no >= 1),
    state            text NOT NULL DEFAULT 'reserved'
                     CHECK (state IN ('reserved', 'dialing', 'accepted', 'ringing', 'in-progress',
                                      'completed', 'busy', 'no-answer', 'failed', 'canceled',
                                      'not_dialed', 'rejected', 'unknown')),
    phone_e164       text NOT NULL,
    caller_id        text,
    slot             integer CHECK (slot >= 0),
    lease_expires_at timestamptz,
    provider_call_id text,
    outcome          text CHECK (outcome IN ('completed', 'busy', 'no-answer', 'failed',
                                             'canceled', 'not_dialed', 'rejected', 'unknown')),
    answered_by      text,
    cost             numeric,
    cost_unit        text,
    requested_at     timestamptz,
    accepted_at      timestamptz,
    answered_at      timestamptz,
    ended_at         timestamptz,
    duration_s       integer CHECK (duration_s >= 0),
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (contact_id, attempt_no),
    -- A live attempt holds a channel slot; a finished one holds none.
    CHECK ((state IN ('reserved', 'dialing', 'accepted', 'ringing', 'in-progress')) = (slot IS NOT NULL))
);
-- Invariant 1: at most one live attempt per contact.
CREATE UNIQUE INDEX attempts_one_live_per_contact ON attempts (contact_id)
    WHERE state IN ('reserved', 'dialing', 'accepted', 'ringing', 'in-progress');
-- Invariant 2: a channel slot is held by at most one live attempt per account.
CREATE UNIQUE INDEX attempts_one_call_per_slot ON attempts (account, slot)
    WHERE state IN ('reserved', 'dialing', 'accepted', 'ringing', 'in-progress');
CREATE INDEX attempts_campaign ON attempts (campaign_id, state);
CREATE INDEX attempts_phone_time ON attempts (phone_e164, requested_at);
CREATE INDEX attempts_provider_call ON attempts (account, provider_call_id)
    WHERE provider_call_id IS NOT NULL;

CREATE TABLE call_events (
    id               bigserial PRIMARY KEY,
    attempt_id       bigint REFERENCES attempts (id) ON DELETE CASCADE,
    account          text NOT NULL,
    provider_call_id text,
    status           text NOT NULL,
    sequence         integer,
    dedupe_key       text NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    payload          jsonb NOT NULL,
    UNIQUE (account, dedupe_key)
);
CREATE INDEX call_events_attempt ON call_events (attempt_id);

CREATE TABLE dnc (
    phone_e164 text PRIMARY KEY CHECK (phone_e164 ~ '^\+[1-9][0-9]{5,14}$'),
    reason     text,
    added_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per `dialer campaign load`, so a reload of the same file is recognised and reported.
CREATE TABLE loads (
    id          bigserial PRIMARY KEY,
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    source      text NOT NULL,
    sha256      text NOT NULL,
    columns     text[] NOT NULL,
    rows_read   integer NOT NULL,
    loaded      integer NOT NULL,
    duplicates  integer NOT NULL,
    suppressed  integer NOT NULL,
    rejected    integer NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE load_rejects (
    campaign_id   bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    row_no        integer NOT NULL,
    raw           jsonb NOT NULL,
    reason        text NOT NULL,
    source_sha256 text NOT NULL,
    rejected_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, source_sha256, row_no)
);
