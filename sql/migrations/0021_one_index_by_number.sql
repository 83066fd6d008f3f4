-- attempts_number_subject (phone_e164, subject, requested_at) serves every look-up by number
-- that attempts_phone_time (phone_e164, requested_at) served: the daily dial cap, consent and
-- erasure find a number's attempts by its leading column and read their times from those few
-- entries. One index fewer to write on every attempt inserted and every state it moves to
-- (issue 16, item 4: about half a kilobyte of WAL per settled call).
DROP INDEX IF EXISTS attempts_phone_time;
