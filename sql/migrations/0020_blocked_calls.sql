-- What the network said of each call, where the provider reports it: the SIP response code
-- (or hangup cause mapped to one) that ended it, and the STIR/SHAKEN verification status of
-- the caller id as presented (attestation A, B or C). A caller id whose calls carriers block
-- (603 Decline, 608 Rejected) rests for the day (rest_caller_id_blocked_above).
ALTER TABLE attempts ADD COLUMN sip_code integer CHECK (sip_code BETWEEN 100 AND 699);
ALTER TABLE attempts ADD COLUMN stir_verstat text;
ALTER TABLE attempts ADD COLUMN attestation text CHECK (attestation IN ('A', 'B', 'C'));

DROP VIEW caller_id_health;
CREATE VIEW caller_id_health AS
SELECT a.account,
       a.caller_id,
       p.period,
       count(*) FILTER (WHERE a.state <> 'not_dialed') AS attempts,
       round(count(*) FILTER (WHERE a.outcome = 'completed')::numeric
             / nullif(count(*) FILTER (WHERE a.outcome IN ('completed', 'busy', 'no-answer',
                                                           'failed', 'canceled', 'unknown',
                                                           'machine')), 0), 4) AS answer_rate,
       round(count(*) FILTER (WHERE a.outcome = 'machine')::numeric
             / nullif(count(*) FILTER (WHERE a.outcome IN ('completed', 'machine')), 0), 4)
           AS machine_rate,
       round(count(*) FILTER (WHERE a.outcome = 'completed' AND a.duration_s < 6)::numeric
             / nullif(count(*) FILTER (WHERE a.outcome = 'completed'), 0), 4)
           AS short_call_rate,
       count(*) FILTER (WHERE a.sip_code = 603) AS declined_603,
       count(*) FILTER (WHERE a.sip_code = 608) AS rejected_608,
       round(count(*) FILTER (WHERE a.sip_code IN (603, 608))::numeric
             / nullif(count(*) FILTER (WHERE a.state <> 'not_dialed'), 0), 4) AS blocked_rate,
       count(*) FILTER (WHERE a.attestation = 'A') AS attested_a,
       count(*) FILTER (WHERE a.attestation = 'B') AS attested_b,
       count(*) FILTER (WHERE a.attestation = 'C') AS attested_c
FROM attempts a
CROSS JOIN (VALUES ('day', interval '1 day'), ('week', interval '7 days')) AS p (period, span)
WHERE a.caller_id IS NOT NULL AND a.requested_at > now() - p.span
GROUP BY a.account, a.caller_id, p.period;
