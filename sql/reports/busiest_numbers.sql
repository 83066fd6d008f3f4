-- Example of extending the views: the numbers dialed most often in a campaign, with outcomes.
-- psql -v campaign=NAME -f sql/reports/busiest_numbers.sql
SELECT phone_e164, count(*) AS attempts, string_agg(coalesce(outcome, 'in-flight'), ', '
       ORDER BY attempt_id) AS outcomes
FROM attempt_log
WHERE campaign = :'campaign' AND state <> 'not_dialed'
GROUP BY phone_e164
ORDER BY attempts DESC, phone_e164
LIMIT 20;
