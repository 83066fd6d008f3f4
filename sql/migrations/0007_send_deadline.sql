-- The last moment an attempt's create-call request may be written (its `dialing` commit plus
-- the send window): the sender refuses to send after it, and the reconciler never closes a
-- `dialing` attempt that has no call id before it plus the HTTP client's timeout.
ALTER TABLE attempts ADD COLUMN send_by timestamptz;
-- When the sender saw its request end without a call id (a 5xx, a timeout after which the
-- connection was aborted): nothing of it can leave any more, so there is nothing to wait for.
ALTER TABLE attempts ADD COLUMN request_done_at timestamptz;

-- An attempt closed `unknown` (no fact, only a lack of one) is re-opened when a fact arrives
-- after all: a call id, a callback, a look-up answer. The call is live at the provider, so the
-- attempt is live again; it holds no channel slot of its own (its slot may have been given to
-- another attempt meanwhile), and the claim counts it against the account's channels anyway.
ALTER TABLE attempts ADD COLUMN reopened_at timestamptz;
ALTER TABLE attempts DROP CONSTRAINT attempts_check;
ALTER TABLE attempts ADD CONSTRAINT attempts_slot_only_while_live
    CHECK (slot IS NULL OR state IN ('reserved', 'dialing', 'accepted', 'ringing', 'in-progress'));
ALTER TABLE attempts ADD CONSTRAINT attempts_live_holds_slot_unless_reopened
    CHECK (slot IS NOT NULL OR reopened_at IS NOT NULL
           OR state NOT IN ('reserved', 'dialing', 'accepted', 'ringing', 'in-progress'));

-- Silent calls are looked up early (dialer/policy/lookups.py): the attempt keeps its campaign's
-- ring timeout and maximum call length, and how many look-ups it has had (for the backoff).
ALTER TABLE attempts
    ADD COLUMN ring_timeout_s integer,
    ADD COLUMN max_duration_s integer,
    ADD COLUMN lookups integer NOT NULL DEFAULT 0;
