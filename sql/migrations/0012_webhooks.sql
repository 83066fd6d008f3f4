-- Outbound webhooks (dialer.webhooks): an outbox written in the same transaction as the state
-- change it reports, and one delivery row per subscribed endpoint, so nothing is lost when a
-- process dies between the change and the delivery.

-- The endpoints some process has configured (dialer.toml [[webhooks]]: name, url, events; the
-- secret stays in the file). A state change writes events only for the types listed here.
CREATE TABLE webhook_endpoints (
    name       text PRIMARY KEY,
    events     text[] NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_events (
    id          bigserial PRIMARY KEY,
    type        text NOT NULL
                CHECK (type IN ('attempt.settled', 'contact.final', 'campaign.finished')),
    -- Deliveries to one endpoint keep this order: 'contact:<id>' or 'campaign:<id>'.
    order_key   text NOT NULL,
    campaign_id bigint NOT NULL,  -- no foreign key: an event outlives a deleted campaign
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_events_created ON webhook_events (created_at);

CREATE TABLE webhook_deliveries (
    endpoint     text NOT NULL,
    event_id     bigint NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    order_key    text NOT NULL,
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'delivered', 'exhausted')),
    tries        integer NOT NULL DEFAULT 0 CHECK (tries >= 0),
    next_try_at  timestamptz NOT NULL DEFAULT now(),
    leased_until timestamptz,
    -- Retries stop 24 hours after this (the event's creation, or its last replay).
    since        timestamptz NOT NULL DEFAULT now(),
    last_error   text,
    delivered_at timestamptz,
    PRIMARY KEY (endpoint, event_id)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint, event_id)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint, order_key, event_id)
    WHERE state = 'pending';

-- Deliveries that exhausted their retries: kept, counted, and sent again by
-- `dialer webhooks replay --since`.
CREATE VIEW webhook_failures AS
SELECT d.endpoint, e.id AS event_id, e.type, e.campaign_id, e.order_key, e.created_at,
       d.tries, d.last_error, d.since AS retried_since
FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
WHERE d.state = 'exhausted';

-- Idempotent API requests: a repeat with the same key gets the stored answer, changes nothing.
CREATE TABLE api_requests (
    key         text PRIMARY KEY,
    request     text NOT NULL,  -- method, path and body digest: a key reused for another request is refused
    status      integer NOT NULL,
    answer      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);


-- The results API's incremental sync (`since`) reads when each contact last changed.
CREATE OR REPLACE VIEW contact_results AS
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
    c.fields,
    c.updated_at
FROM contacts c
JOIN campaigns k ON k.id = c.campaign_id
LEFT JOIN LATERAL (
    SELECT max(a.requested_at) AS last_attempt_at,
           sum(a.duration_s) FILTER (WHERE a.outcome = 'completed') AS talk_s
    FROM attempts a WHERE a.contact_id = c.id AND a.state <> 'not_dialed'
) l ON true;
