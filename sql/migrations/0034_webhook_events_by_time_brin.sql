-- webhook_events' index by creation time as a BRIN index (issue 16, item 4). Its only reader
-- is `dialer webhooks replay --since` (db.webhooks.REPLAY), and the events are appended in
-- time order, which is what a BRIN index summarizes: a few kilobytes for the whole table
-- instead of an entry per event, and nothing written for an event added to the table's last
-- pages. The b-tree wrote an entry (and its WAL, 64 bytes) for each of a call's two events.
DROP INDEX webhook_events_created;
CREATE INDEX webhook_events_created ON webhook_events USING brin (created_at)
    WITH (autosummarize = on);  -- each range summarized once filled, not at the next VACUUM
