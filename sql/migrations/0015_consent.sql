-- The consent ledger (dialer/consent.py): grants and revocations of consent to be called, per
-- number and scope, append-only and hash-chained so that an edited, deleted or reordered row is
-- detected (`dialer consent verify`). The chain hashes the number's keyed hash, never the number
-- itself: erasure (`dialer forget`) clears the plain column and the chain still verifies.

-- The key of the keyed hashes (HMAC-SHA256) that stand for an erased number.
ALTER TABLE dialer_install ADD COLUMN privacy_key text NOT NULL
    DEFAULT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');

CREATE TABLE consent_events (
    id              bigint PRIMARY KEY,
    phone_e164      text CHECK (phone_e164 ~ '^\+[1-9][0-9]{5,14}$'),  -- NULL once erased
    phone_key       text NOT NULL,  -- HMAC-SHA256(privacy_key, number), hex
    scope           text NOT NULL CHECK (scope ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    action          text NOT NULL CHECK (action IN ('grant', 'revoke')),
    source          text NOT NULL,
    evidence_sha256 text CHECK (evidence_sha256 ~ '^[0-9a-f]{64}$'),
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    prev_hash       text NOT NULL,
    row_hash        text NOT NULL UNIQUE
);
CREATE SEQUENCE consent_events_id_seq OWNED BY consent_events.id;
CREATE INDEX consent_events_number ON consent_events (phone_e164, scope, id);
CREATE INDEX consent_events_key ON consent_events (phone_key);

-- Append-only: a row is never deleted, and never changed but to erase its plain number.
CREATE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'consent_events is append-only: row % cannot be deleted', OLD.id;
    END IF;
    IF NEW.phone_e164 IS NOT NULL
       OR (NEW.id, NEW.phone_key, NEW.scope, NEW.action, NEW.source, NEW.evidence_sha256,
           NEW.occurred_at, NEW.recorded_at, NEW.prev_hash, NEW.row_hash)
          IS DISTINCT FROM
          (OLD.id, OLD.phone_key, OLD.scope, OLD.action, OLD.source, OLD.evidence_sha256,
           OLD.occurred_at, OLD.recorded_at, OLD.prev_hash, OLD.row_hash) THEN
        RAISE EXCEPTION 'consent_events is append-only: row % can only have its number erased',
            OLD.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER consent_events_append_only BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_append_only();
