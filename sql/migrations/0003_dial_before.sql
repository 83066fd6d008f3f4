-- The end of the calling window in which an attempt was claimed: it may not be sent after this,
-- however long it waited for a request slot (the send compare-and-set checks it).
ALTER TABLE attempts ADD COLUMN dial_before timestamptz;
