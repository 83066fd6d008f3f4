-- Outcomes per hour of the day, in the campaign's own timezone: when do people answer?
-- psql -v campaign=NAME -f sql/reports/hourly_outcomes.sql
SELECT hour,
       sum(attempts) AS attempts,
       sum(attempts) FILTER (WHERE outcome = 'completed') AS completed,
       round(sum(attempts) FILTER (WHERE outcome = 'completed')::numeric
             / nullif(sum(attempts) FILTER (WHERE outcome NOT IN ('not_dialed', 'in-flight')), 0),
             3) AS answer_rate
FROM hourly_outcomes
WHERE campaign = :'campaign'
GROUP BY hour
ORDER BY hour;
