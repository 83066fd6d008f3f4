-- The guards of 0027-0029 that keep keys from changing become statement triggers. As row
-- triggers (BEFORE UPDATE OF <key> ... FOR EACH ROW) they cost every update of their tables,
-- not only those that set the key: PostgreSQL locks each row it updates before it looks at a
-- row trigger's column list, and that lock is a WAL record. On attempts, updated about four
-- times a call, it was 270 bytes of WAL a settled call (bench/statements.py: 11,468 -> 11,739).
-- A statement trigger is looked at once per statement, against the columns the statement
-- sets, and never touches a row. So an UPDATE that names one of these keys is refused, even
-- one that would set it to what it is: nothing in dialer sets them.
DROP TRIGGER attempts_keep_their_id ON attempts;
DROP FUNCTION attempts_keep_their_id();
DROP TRIGGER attempts_keep_their_contact ON attempts;
DROP TRIGGER attempts_keep_their_campaign ON attempts;
DROP TRIGGER contacts_keep_their_id ON contacts;
DROP TRIGGER campaigns_keep_their_id ON campaigns;
DROP TRIGGER webhook_deliveries_keep_their_event ON webhook_deliveries;
DROP TRIGGER webhook_events_keep_their_id ON webhook_events;

CREATE TRIGGER attempts_keep_their_keys BEFORE UPDATE OF id, contact_id, campaign_id ON attempts
    FOR EACH STATEMENT EXECUTE FUNCTION key_never_changes('id, contact_id or campaign_id');
CREATE TRIGGER contacts_keep_their_id BEFORE UPDATE OF id ON contacts
    FOR EACH STATEMENT EXECUTE FUNCTION key_never_changes('id');
CREATE TRIGGER campaigns_keep_their_id BEFORE UPDATE OF id ON campaigns
    FOR EACH STATEMENT EXECUTE FUNCTION key_never_changes('id');
CREATE TRIGGER webhook_deliveries_keep_their_event BEFORE UPDATE OF event_id ON webhook_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION key_never_changes('event_id');
CREATE TRIGGER webhook_events_keep_their_id BEFORE UPDATE OF id ON webhook_events
    FOR EACH STATEMENT EXECUTE FUNCTION key_never_changes('id');
