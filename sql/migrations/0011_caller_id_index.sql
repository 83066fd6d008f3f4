-- Resting tired caller ids (every few seconds per campaign) and caller_id_health (each metrics
-- scrape) read a number's recent attempts: found by index, not by reading every attempt.
CREATE INDEX attempts_caller_time ON attempts (caller_id, requested_at) WHERE caller_id IS NOT NULL;
