-- webhook_deliveries' foreign key to webhook_events, checked once per statement instead of
-- once per row (issue 16, item 4), as 0027 and 0028 did for call_events and attempts. A
-- settled call writes two webhook events, each with a delivery per subscribed endpoint, in
-- the statement that settles it (db.webhooks.write_ctes): two checks a call, or more with
-- more endpoints.
--
-- The rules are the same, and still held by the database:
--   * a delivery's event exists, and is kept (locked FOR KEY SHARE, as the foreign key did)
--     until the writing transaction ends; deleting events deletes their deliveries;
--   * a delivery's event never changes, nor an event's id.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_event_id_fkey;

CREATE FUNCTION webhook_deliveries_checked() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    no_event bigint;
BEGIN
    -- One query: each event the statement's rows name, looked up by its key and locked (the
    -- aggregate reads, and so locks, every one). The statement's own new events are seen:
    -- this runs after it.
    SELECT min(n.event_id) INTO no_event
    FROM (SELECT DISTINCT w.event_id FROM written w) n
    LEFT JOIN LATERAL (SELECT e.id FROM webhook_events e WHERE e.id = n.event_id
                       FOR KEY SHARE) e ON true
    WHERE e.id IS NULL;
    IF no_event IS NOT NULL THEN
        RAISE EXCEPTION 'webhook_deliveries: event % does not exist', no_event
            USING ERRCODE = 'foreign_key_violation', TABLE = 'webhook_deliveries',
                  COLUMN = 'event_id', CONSTRAINT = 'webhook_deliveries_event_id_fkey';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER webhook_deliveries_checked AFTER INSERT ON webhook_deliveries
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_deliveries_checked();

CREATE FUNCTION deliveries_of_deleted_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM webhook_deliveries WHERE event_id = ANY (ARRAY(SELECT g.id FROM gone g));
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_events_delete_their_deliveries AFTER DELETE ON webhook_events
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_of_deleted_events();

CREATE TRIGGER webhook_deliveries_keep_their_event BEFORE UPDATE OF event_id ON webhook_deliveries
    FOR EACH ROW WHEN (OLD.event_id IS DISTINCT FROM NEW.event_id)
    EXECUTE FUNCTION key_never_changes('event_id');
CREATE TRIGGER webhook_events_keep_their_id BEFORE UPDATE OF id ON webhook_events
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION key_never_changes('id');
