-- How each caller id is doing, per account, over the last day and the last week: a number
-- people stop picking up (flagged as spam) shows a falling answer rate and more short calls.
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
           AS short_call_rate
FROM attempts a
CROSS JOIN (VALUES ('day', interval '1 day'), ('week', interval '7 days')) AS p (period, span)
WHERE a.caller_id IS NOT NULL AND a.requested_at > now() - p.span
GROUP BY a.account, a.caller_id, p.period;
