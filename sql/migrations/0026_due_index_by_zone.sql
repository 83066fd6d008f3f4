-- The due index led by the contact's zone. The claim's pick walked contacts_due in dialing
-- order and tested each contact's calling window as it went, so it read every contact ahead
-- of the first due one: with a million contacts whose first half is in a zone closed now, 0.38
-- s of PostgreSQL per claim of 200 (bench/due_walk.py). The pick now finds the campaign's
-- zones (one probe of this index per zone), keeps those open now, and walks this index within
-- each open zone, merging their first contacts in dialing order (db.contacts). It replaces
-- contacts_due rather than joining it: every reader of that index gave the campaign first,
-- which this one still does, and a second index would cost a load about a second a million
-- rows (bench/RESULTS.md).
DROP INDEX contacts_due;
CREATE INDEX contacts_due_by_zone
    ON contacts (campaign_id, timezone, priority DESC, attempts, next_attempt_at, id)
    WHERE state = 'pending';
