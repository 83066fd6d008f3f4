-- Reporting views: what teams read during and after a campaign (columns in sql/README.md).
-- Views only read the tables; they may be replaced by later migrations, adding columns at the end.

-- campaign_summary gains p90 talk time and cost (where the provider reports it).
CREATE OR REPLACE VIEW campaign_summary AS
SELECT
    k.id AS campaign_id,
    k.name AS campaign,
    k.account,
    k.status,
    k.status_reason,
    coalesce(c.contacts, 0) AS contacts,
    coalesce(c.pending, 0) AS pending,
    coalesce(c.dialing, 0) AS dialing,
    coalesce(c.done, 0) AS done,
    coalesce(c.exhausted, 0) AS exhausted,
    coalesce(c.failed, 0) AS failed,
    coalesce(c.suppressed, 0) AS suppressed,
    coalesce(c.canceled, 0) AS canceled,
    coalesce(a.attempts, 0) AS attempts,
    coalesce(a.completed, 0) AS completed,
    coalesce(a.busy, 0) AS busy,
    coalesce(a.no_answer, 0) AS no_answer,
    coalesce(a.call_failed, 0) AS call_failed,
    coalesce(a.rejected, 0) AS rejected,
    coalesce(a.unknown, 0) AS unknown,
    coalesce(a.in_flight, 0) AS in_flight,
    round(a.completed::numeric / nullif(a.dialed, 0), 4) AS answer_rate,
    round(a.mean_talk_s, 1) AS mean_talk_s,
    round(a.p90_talk_s::numeric, 1) AS p90_talk_s,
    coalesce(a.call_canceled, 0) AS call_canceled,
    a.total_cost,
    a.cost_unit
FROM campaigns k
LEFT JOIN (
    SELECT campaign_id,
           count(*) AS contacts,
           count(*) FILTER (WHERE state = 'pending') AS pending,
           count(*) FILTER (WHERE state = 'dialing') AS dialing,
           count(*) FILTER (WHERE state = 'done') AS done,
           count(*) FILTER (WHERE state = 'exhausted') AS exhausted,
           count(*) FILTER (WHERE state = 'failed') AS failed,
           count(*) FILTER (WHERE state = 'suppressed') AS suppressed,
           count(*) FILTER (WHERE state = 'canceled') AS canceled
    FROM contacts GROUP BY campaign_id
) c ON c.campaign_id = k.id
LEFT JOIN (
    SELECT campaign_id,
           count(*) FILTER (WHERE state <> 'not_dialed') AS attempts,
           count(*) FILTER (WHERE outcome IN ('completed', 'busy', 'no-answer', 'failed',
                                              'canceled', 'unknown')) AS dialed,
           count(*) FILTER (WHERE outcome = 'completed') AS completed,
           count(*) FILTER (WHERE outcome = 'busy') AS busy,
           count(*) FILTER (WHERE outcome = 'no-answer') AS no_answer,
           count(*) FILTER (WHERE outcome = 'failed') AS call_failed,
           count(*) FILTER (WHERE outcome = 'rejected') AS rejected,
           count(*) FILTER (WHERE outcome = 'unknown') AS unknown,
           count(*) FILTER (WHERE outcome IS NULL) AS in_flight,
           avg(duration_s) FILTER (WHERE outcome = 'completed') AS mean_talk_s,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_s)
               FILTER (WHERE outcome = 'completed') AS p90_talk_s,
           count(*) FILTER (WHERE outcome = 'canceled') AS call_canceled,
           sum(cost) AS total_cost,
           min(cost_unit) AS cost_unit
    FROM attempts GROUP BY campaign_id
) a ON a.campaign_id = k.id;

-- One row per contact: where it ended and how it got there, with every CSV field.
CREATE VIEW contact_results AS
SELECT
    k.name AS campaign,
    c.campaign_id,
    c.id AS contact_id,
    c.row_no,
    c.phone_e164,
    c.name,
    c.timezone,
    c.priority,
    c.state,
    CASE WHEN c.state IN ('done', 'exhausted', 'failed') THEN c.last_outcome
         WHEN c.state = 'suppressed' THEN 'do-not-call'
         WHEN c.state = 'canceled' THEN 'canceled' END AS final_outcome,
    c.last_outcome,
    c.attempts,
    l.last_attempt_at,
    l.talk_s,
    c.next_attempt_at,
    c.fields
FROM contacts c
JOIN campaigns k ON k.id = c.campaign_id
LEFT JOIN LATERAL (
    SELECT max(a.requested_at) AS last_attempt_at,
           sum(a.duration_s) FILTER (WHERE a.outcome = 'completed') AS talk_s
    FROM attempts a WHERE a.contact_id = c.id AND a.state <> 'not_dialed'
) l ON true;

-- One row per attempt, with its campaign's name.
CREATE VIEW attempt_log AS
SELECT
    k.name AS campaign,
    a.campaign_id,
    a.id AS attempt_id,
    a.contact_id,
    a.attempt_no,
    a.account,
    a.phone_e164,
    a.caller_id,
    a.state,
    a.outcome,
    a.provider_call_id,
    a.created_at,
    a.requested_at,
    a.accepted_at,
    a.answered_at,
    a.ended_at,
    a.duration_s,
    a.answered_by,
    a.cost,
    a.cost_unit,
    a.error
FROM attempts a
JOIN campaigns k ON k.id = a.campaign_id;

-- Attempts sent per campaign, hour (in the campaign's timezone) and outcome.
CREATE VIEW hourly_outcomes AS
SELECT
    k.name AS campaign,
    a.campaign_id,
    k.spec ->> 'timezone' AS timezone,
    date_trunc('hour', a.requested_at AT TIME ZONE (k.spec ->> 'timezone')) AS hour,
    coalesce(a.outcome, 'in-flight') AS outcome,
    count(*) AS attempts,
    sum(a.duration_s) FILTER (WHERE a.outcome = 'completed') AS talk_s
FROM attempts a
JOIN campaigns k ON k.id = a.campaign_id
WHERE a.requested_at IS NOT NULL
GROUP BY k.name, a.campaign_id, k.spec ->> 'timezone',
         date_trunc('hour', a.requested_at AT TIME ZONE (k.spec ->> 'timezone')),
         coalesce(a.outcome, 'in-flight');

-- Per account and minute (UTC): requests sent, calls dialed, 429s, and the most channels held
-- at once (a channel is held from the claim until the attempt settles).
CREATE VIEW account_usage AS
WITH requests AS (
    SELECT account, date_trunc('minute', requested_at) AS minute,
           count(*) AS requests,
           count(*) FILTER (WHERE state <> 'not_dialed') AS dials,
           count(*) FILTER (WHERE state = 'not_dialed' AND error LIKE '429%') AS rate_limited
    FROM attempts WHERE requested_at IS NOT NULL
    GROUP BY 1, 2
), changes AS (
    SELECT account, created_at AS at, 1 AS delta FROM attempts
    UNION ALL
    SELECT account, ended_at, -1 FROM attempts WHERE ended_at IS NOT NULL AND slot IS NULL
), held AS (
    SELECT account, at,
           sum(delta) OVER (PARTITION BY account ORDER BY at, delta
                            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS channels
    FROM changes
), peaks AS (
    SELECT account, date_trunc('minute', at) AS minute, max(channels) AS peak_channels
    FROM held GROUP BY 1, 2
)
SELECT coalesce(r.account, p.account) AS account,
       coalesce(r.minute, p.minute) AS minute,
       coalesce(r.requests, 0) AS requests,
       coalesce(r.dials, 0) AS dials,
       coalesce(r.rate_limited, 0) AS rate_limited,
       coalesce(p.peak_channels, 0) AS peak_channels,
       x.channels AS channel_limit
FROM requests r
FULL JOIN peaks p ON p.account = r.account AND p.minute = r.minute
LEFT JOIN accounts x ON x.name = coalesce(r.account, p.account);
