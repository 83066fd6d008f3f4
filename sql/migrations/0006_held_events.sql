-- Callbacks that are authentic but cannot be trusted to settle an attempt (an unreadable body, a
-- status word we do not know, an absurd duration, a call id that belongs to another attempt) are
-- kept as they came, marked held with the problem, and never applied: the reconciler settles
-- their attempts from the provider's own records.
ALTER TABLE call_events
    ADD COLUMN held boolean NOT NULL DEFAULT false,
    ADD COLUMN problem text;
