-- Every contact of a campaign with its final outcome, attempts and last attempt time.
-- psql -v campaign=NAME -f sql/reports/contact_results.sql
SELECT row_no, phone_e164, name, state, final_outcome, attempts, last_attempt_at, talk_s, fields
FROM contact_results
WHERE campaign = :'campaign'
ORDER BY row_no;
