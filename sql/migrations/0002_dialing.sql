-- Dialing bookkeeping and the first reporting view.

-- When an attempt must have its final event by (ring timeout + max call length + grace, from the
-- moment it was sent); past it, the reconciler asks the provider or closes it as `unknown`.
ALTER TABLE attempts ADD COLUMN settle_by timestamptz;
CREATE INDEX attempts_live ON attempts (account, state, settle_by)
    WHERE state IN ('reserved', 'dialing', 'accepted', 'ringing', 'in-progress');

-- One row per campaign: contacts by state, attempts by outcome, answer rate, mean talk time.
CREATE VIEW campaign_summary AS
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
    round(a.mean_talk_s, 1) AS mean_talk_s
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
           avg(duration_s) FILTER (WHERE outcome = 'completed') AS mean_talk_s
    FROM attempts GROUP BY campaign_id
) a ON a.campaign_id = k.id;
