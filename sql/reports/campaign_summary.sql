-- One campaign at a glance: contacts by state, attempts by outcome, answer rate, talk time, cost.
-- psql -v campaign=NAME -f sql/reports/campaign_summary.sql
\x on
SELECT * FROM campaign_summary WHERE campaign = :'campaign';
