-- Who answered: a call answered by a machine, voicemail or fax settles `machine` (campaigns
-- with machine_detection), beside completed, busy, no-answer and failed.
ALTER TABLE attempts DROP CONSTRAINT attempts_state_check;
ALTER TABLE attempts ADD CONSTRAINT attempts_state_check
    CHECK (state IN ('reserved', 'dialing', 'accepted', 'ringing', 'in-progress',
                     'completed', 'busy', 'no-answer', 'failed', 'canceled', 'machine',
                     'not_dialed', 'rejected', 'unknown'));
ALTER TABLE attempts DROP CONSTRAINT attempts_outcome_check;
ALTER TABLE attempts ADD CONSTRAINT attempts_outcome_check
    CHECK (outcome IN ('completed', 'busy', 'no-answer', 'failed', 'canceled', 'machine',
                       'not_dialed', 'rejected', 'unknown'));
-- The provider's final word, kept while the answering-machine result it does not carry is
-- still to come (Twilio sends it apart, asynchronously): the attempt stays live until the
-- result arrives, or the reconciler reads it from the call resource.
ALTER TABLE attempts ADD COLUMN held_outcome text
    CHECK (held_outcome IN ('completed', 'busy', 'no-answer', 'failed', 'canceled'));

-- campaign_summary gains the machine outcome and splits answers: `answer_rate` stays "answered
-- at all" (completed + machine), `human_answer_rate` and `machine_answer_rate` divide it.
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
    round((a.completed + a.machine)::numeric / nullif(a.dialed, 0), 4) AS answer_rate,
    round(a.mean_talk_s, 1) AS mean_talk_s,
    round(a.p90_talk_s::numeric, 1) AS p90_talk_s,
    coalesce(a.call_canceled, 0) AS call_canceled,
    a.total_cost,
    a.cost_unit,
    coalesce(a.machine, 0) AS machine,
    round(a.completed::numeric / nullif(a.dialed, 0), 4) AS human_answer_rate,
    round(a.machine::numeric / nullif(a.dialed, 0), 4) AS machine_answer_rate
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
                                              'canceled', 'unknown', 'machine')) AS dialed,
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
           min(cost_unit) AS cost_unit,
           count(*) FILTER (WHERE outcome = 'machine') AS machine
    FROM attempts GROUP BY campaign_id
) a ON a.campaign_id = k.id;
