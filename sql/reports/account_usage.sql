-- The campaign's account, minute by minute: requests, dials, 429s, peak channels vs limit.
-- psql -v campaign=NAME -f sql/reports/account_usage.sql
SELECT minute, requests, dials, rate_limited, peak_channels, channel_limit
FROM account_usage
WHERE account = (SELECT account FROM campaigns WHERE name = :'campaign')
ORDER BY minute;
