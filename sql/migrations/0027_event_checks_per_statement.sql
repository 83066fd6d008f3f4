-- call_events' two checks, once per statement instead of once per row (issue 16, items 3 and
-- 4). Every stored event fired a PL/pgSQL trigger (the erasure guard of 0017: one query) and
-- the foreign key to attempts (one more): 7.4 of the 21 statements a settled call cost
-- PostgreSQL, as callbacks come one or a few per statement.
--
-- The rules are the same, and still held by the database:
--   * an event's attempt exists, and is kept (locked FOR KEY SHARE, as the foreign key did)
--     until the writing transaction ends; deleting an attempt deletes its events;
--   * an event of an erased attempt holds no content: its payload is {"erased": true}.
-- What changed is who empties the payload. The erasure guard rewrote it, row by row, before
-- the row was written. The writers now store it empty themselves (dialer.db.events judges
-- each event's attempt in the same statement, and reads whether it is erased there), and this
-- check refuses a statement that would store content for an erased attempt: the row never
-- commits. Refusing rather than rewriting keeps the number out of the table and its WAL
-- whoever writes; an UPDATE after the fact would not.
ALTER TABLE call_events DROP CONSTRAINT call_events_attempt_id_fkey;
DROP TRIGGER call_events_of_erased ON call_events;
DROP FUNCTION call_events_of_erased();

CREATE FUNCTION call_events_checked() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing bigint;
    leaks boolean;
    culprit bigint;
BEGIN
    -- One query: each attempt the statement's rows name, looked up by its key and locked so
    -- that none is deleted before this transaction ends (the aggregate reads, and so locks,
    -- every one of them). A locked subquery is never flattened into a join, so each look-up
    -- stays one probe of the primary key, whatever the planner guesses of the rows written.
    SELECT count(*) FILTER (WHERE l.id IS NULL),
           coalesce(bool_or(l.erased_at IS NOT NULL AND EXISTS (
               SELECT 1 FROM written w
               WHERE w.attempt_id = n.attempt_id
                 AND w.payload IS DISTINCT FROM '{"erased": true}'::jsonb)), false)
    INTO missing, leaks
    FROM (SELECT DISTINCT w.attempt_id FROM written w WHERE w.attempt_id IS NOT NULL) n
    LEFT JOIN LATERAL (SELECT a.id, a.erased_at FROM attempts a WHERE a.id = n.attempt_id
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

CREATE TRIGGER call_events_checked_insert AFTER INSERT ON call_events
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION call_events_checked();
CREATE TRIGGER call_events_checked_update AFTER UPDATE ON call_events
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION call_events_checked();

-- The foreign key's other half: an attempt's events go with it, and an attempt's id never
-- changes under its events.
CREATE FUNCTION call_events_of_deleted_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- an array, so that the events are found through their index whatever the rows gone
    DELETE FROM call_events WHERE attempt_id = ANY (ARRAY(SELECT g.id FROM gone g));
    RETURN NULL;
END $$;
CREATE TRIGGER attempts_delete_their_events AFTER DELETE ON attempts
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION call_events_of_deleted_attempts();

CREATE FUNCTION attempts_keep_their_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'attempts: an attempt''s id never changes (% to %)', OLD.id, NEW.id
        USING ERRCODE = 'foreign_key_violation', TABLE = 'attempts', COLUMN = 'id';
END $$;
CREATE TRIGGER attempts_keep_their_id BEFORE UPDATE OF id ON attempts
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION attempts_keep_their_id();
