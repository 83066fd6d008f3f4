-- The statement-level checks of call_events (0027) and webhook_deliveries (0029) lock only
-- the rows another transaction could still delete (issue 16, item 4). Each check locks every
-- attempt or webhook event the statement's rows name FOR KEY SHARE, as a foreign key did, so
-- that none is deleted before the writing transaction ends. But most of them are rows this
-- transaction wrote itself: a progress batch or a settling statement updates the attempts its
-- events move on, and a settling statement inserts the webhook events its deliveries name. No
-- other transaction can delete such a row before this one ends (a row this transaction
-- inserted is seen by no other; one it updated is locked by that update until it ends), so
-- the lock adds nothing, and it cost a WAL record each: about 5.7 a settled call.
--
-- The rules are the same, and still held by the database: a row version whose xmin is this
-- transaction is read without a lock; any other (one written by another transaction, or by
-- this one inside a savepoint) is locked FOR KEY SHARE as before.
CREATE OR REPLACE FUNCTION call_events_checked() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing bigint;
    leaks boolean;
    culprit bigint;
    mine xid := pg_current_xact_id()::xid;
BEGIN
    -- One query: each attempt the statement's rows name, looked up by its key, and locked so
    -- that none is deleted before this transaction ends unless this transaction wrote it (the
    -- aggregate reads, and so locks, every one of them). A locked subquery is never flattened
    -- into a join, so each look-up stays one probe of the primary key.
    SELECT count(*) FILTER (WHERE coalesce(o.id, l.id) IS NULL),
           coalesce(bool_or(coalesce(o.erased_at, l.erased_at) IS NOT NULL AND EXISTS (
               SELECT 1 FROM written w
               WHERE w.attempt_id = n.attempt_id
                 AND w.payload IS DISTINCT FROM '{"erased": true}'::jsonb)), false)
    INTO missing, leaks
    FROM (SELECT DISTINCT w.attempt_id FROM written w WHERE w.attempt_id IS NOT NULL) n
    LEFT JOIN LATERAL (SELECT a.id, a.erased_at FROM attempts a
                       WHERE a.id = n.attempt_id AND a.xmin = mine) o ON true
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
    -- unless this transaction wrote it (the aggregate reads, and so locks, every one). The
    -- statement's own new events are seen: this runs after it.
    SELECT min(n.event_id) INTO no_event
    FROM (SELECT DISTINCT w.event_id FROM written w) n
    LEFT JOIN LATERAL (SELECT e.id FROM webhook_events e
                       WHERE e.id = n.event_id AND e.xmin = mine) o ON true
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
