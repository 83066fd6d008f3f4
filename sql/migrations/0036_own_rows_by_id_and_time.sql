-- The checks of 0033 skip the lock only for a row this transaction wrote, told by two marks
-- instead of one (issue 16, item 4, found in review).
--
-- 0033 told such a row by `xmin = pg_current_xact_id()::xid` alone. But `xmin` reads the
-- 32-bit id a row version was written with, and a frozen version keeps it: once the cluster
-- has used 2^32 transaction ids more, a row written long ago and never changed since (a
-- closed attempt, an old webhook event) can carry the very id of the transaction now
-- writing an event for it. Read without a lock, it could then be deleted (erasure, a
-- deleted campaign) before that transaction commits, and the new event would name nothing.
--
-- So the row must also carry this transaction's start time: an attempt's `updated_at` (every
-- statement that moves an attempt sets it to now(), and an insert takes it by default), a
-- webhook event's `created_at` (set by default when it is written, never changed). A row
-- written by another transaction cannot carry both. Any row this leaves in doubt (written by
-- this transaction without setting the time, or in a savepoint) is locked FOR KEY SHARE as
-- before: the rule errs toward the lock, never away from it.
CREATE OR REPLACE FUNCTION call_events_checked() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing bigint;
    leaks boolean;
    culprit bigint;
    mine xid := pg_current_xact_id()::xid;
BEGIN
    -- One query: each attempt the statement's rows name, looked up by its key, and locked so
    -- that none is deleted before this transaction ends unless this transaction wrote it (its
    -- xmin and its updated_at both say so; the aggregate reads, and so locks, every one). A
    -- locked subquery is never flattened into a join, so each look-up stays one probe of the
    -- primary key.
    SELECT count(*) FILTER (WHERE coalesce(o.id, l.id) IS NULL),
           coalesce(bool_or(coalesce(o.erased_at, l.erased_at) IS NOT NULL AND EXISTS (
               SELECT 1 FROM written w
               WHERE w.attempt_id = n.attempt_id
                 AND w.payload IS DISTINCT FROM '{"erased": true}'::jsonb)), false)
    INTO missing, leaks
    FROM (SELECT DISTINCT w.attempt_id FROM written w WHERE w.attempt_id IS NOT NULL) n
    LEFT JOIN LATERAL (SELECT a.id, a.erased_at FROM attempts a
                       WHERE a.id = n.attempt_id AND a.xmin = mine
                         AND a.updated_at = now()) o ON true
    LEFT JOIN LATERAL (SELECT a.id, a.erased_at FROM attempts a
                       WHERE a.id = n.attempt_id AND o.id IS NULL
                       FOR KEY SHARE) l ON true;
    IF missing > 0 THEN
        SELECT w.attempt_id INTO culprit FROM written w
        WHERE w.attempt_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.id = w.attempt_id)
        LIMIT 1;
        RAISE EXCEPTION 'call_events: attempt % does not exist', culprit
            USING ERRCODE = 'foreign_key_violation', TABLE = 'call_events',
                  COLUMN = 'attempt_id', CONSTRAINT = 'call_events_attempt_id_fkey';
    END IF;
    IF leaks THEN
        SELECT w.attempt_id INTO culprit FROM written w JOIN attempts a ON a.id = w.attempt_id
        WHERE a.erased_at IS NOT NULL
          AND w.payload IS DISTINCT FROM '{"erased": true}'::jsonb
        LIMIT 1;
        RAISE EXCEPTION 'call_events: attempt % is erased; its events are stored as {"erased": true}',
                        culprit
            USING ERRCODE = 'check_violation', TABLE = 'call_events', COLUMN = 'payload',
                  CONSTRAINT = 'call_events_of_erased';
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION webhook_deliveries_checked() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    no_event bigint;
    mine xid := pg_current_xact_id()::xid;
BEGIN
    -- One query: each event the statement's rows name, looked up by its key, and locked
    -- unless this transaction wrote it (its xmin and its created_at both say so; the
    -- aggregate reads, and so locks, every one). The statement's own new events are seen:
    -- this runs after it.
    SELECT min(n.event_id) INTO no_event
    FROM (SELECT DISTINCT w.event_id FROM written w) n
    LEFT JOIN LATERAL (SELECT e.id FROM webhook_events e
                       WHERE e.id = n.event_id AND e.xmin = mine
                         AND e.created_at = now()) o ON true
    LEFT JOIN LATERAL (SELECT e.id FROM webhook_events e
                       WHERE e.id = n.event_id AND o.id IS NULL
                       FOR KEY SHARE) e ON true
    WHERE o.id IS NULL AND e.id IS NULL;
    IF no_event IS NOT NULL THEN
        RAISE EXCEPTION 'webhook_deliveries: event % does not exist', no_event
            USING ERRCODE = 'foreign_key_violation', TABLE = 'webhook_deliveries',
                  COLUMN = 'event_id', CONSTRAINT = 'webhook_deliveries_event_id_fkey';
    END IF;
    RETURN NULL;
END $$;
