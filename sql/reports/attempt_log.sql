-- Every attempt of a campaign, in the order they were made.
-- psql -v campaign=NAME -f sql/reports/attempt_log.sql
SELECT attempt_id, phone_e164, attempt_no, state, outcome, requested_at, answered_at, ended_at,
       duration_s, provider_call_id, error
FROM attempt_log
WHERE campaign = :'campaign'
ORDER BY attempt_id;
