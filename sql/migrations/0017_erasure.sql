-- Erasure on request (`dialer forget`, DELETE /api/v1/contacts/{number}; dialer/erasure.py):
-- the number leaves every table, its rows stay (so every count stays the same), and a keyed
-- hash of it (HMAC-SHA256 with dialer_install.privacy_key) keeps it do-not-call for good.

CREATE TABLE erased_numbers (
    phone_key    text PRIMARY KEY,           -- HMAC-SHA256(privacy_key, number), hex
    erased_at    timestamptz NOT NULL DEFAULT now(),
    requested_by text NOT NULL               -- 'cli:<user>' or 'api:<token name>'
);

-- An erased contact or attempt keeps its row without the number.
ALTER TABLE contacts ALTER COLUMN phone_e164 DROP NOT NULL, ADD COLUMN erased_at timestamptz;
ALTER TABLE attempts ALTER COLUMN phone_e164 DROP NOT NULL, ADD COLUMN erased_at timestamptz;

-- A provider may still report on an erased attempt (a duplicate, an hour-late callback, the
-- reconciler's look-up): its payload is stored without content, whoever writes it.
CREATE FUNCTION call_events_of_erased() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.attempt_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM attempts WHERE id = NEW.attempt_id AND erased_at IS NOT NULL
    ) THEN
        NEW.payload := jsonb_build_object('erased', true);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER call_events_of_erased BEFORE INSERT OR UPDATE OF payload ON call_events
    FOR EACH ROW EXECUTE FUNCTION call_events_of_erased();

-- Files dialer wrote that may hold numbers (rejects files, exports): `forget` lists them for
-- the operator to delete, with the machine they are on.
CREATE TABLE written_files (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('rejects', 'export')),
    path        text NOT NULL,
    host        text NOT NULL,
    campaign_id bigint,                      -- no foreign key: the file outlives its campaign
    written_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX written_files_campaign ON written_files (campaign_id);
