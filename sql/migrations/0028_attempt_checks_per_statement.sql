-- attempts' two foreign keys (to contacts and to campaigns), checked once per statement
-- instead of once per row (issue 16, item 4), as 0027 did for call_events. A claim writes its
-- batch of attempts (up to 200) in one statement, and each row cost PostgreSQL two checks:
-- 2.0 of the 17 statements a settled call cost.
--
-- The rules are the same, and still held by the database:
--   * an attempt's contact and campaign exist, and are kept (locked FOR KEY SHARE, as the
--     foreign keys did) until the writing transaction ends;
--   * deleting contacts or a campaign deletes their attempts (and, 0027, their events);
--   * an attempt's contact and campaign never change, nor a contact's or a campaign's id.
ALTER TABLE attempts
    DROP CONSTRAINT attempts_contact_id_fkey,
    DROP CONSTRAINT attempts_campaign_id_fkey;

CREATE FUNCTION attempts_checked() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    no_contact bigint;
    no_campaign bigint;
BEGIN
    -- One query: each contact and campaign the statement's rows name, looked up by its key and
    -- locked (the aggregates read, and so lock, every one; a locked subquery stays one probe
    -- of the key per row, whatever the planner guesses of the rows written).
    SELECT (SELECT min(n.contact_id)
            FROM (SELECT DISTINCT w.contact_id FROM written w) n
            LEFT JOIN LATERAL (SELECT c.id FROM contacts c WHERE c.id = n.contact_id
                               FOR KEY SHARE) c ON true
            WHERE c.id IS NULL),
           (SELECT min(n.campaign_id)
            FROM (SELECT DISTINCT w.campaign_id FROM written w) n
            LEFT JOIN LATERAL (SELECT k.id FROM campaigns k WHERE k.id = n.campaign_id
                               FOR KEY SHARE) k ON true
            WHERE k.id IS NULL)
    INTO no_contact, no_campaign;
    IF no_contact IS NOT NULL THEN
        RAISE EXCEPTION 'attempts: contact % does not exist', no_contact
            USING ERRCODE = 'foreign_key_violation', TABLE = 'attempts',
                  COLUMN = 'contact_id', CONSTRAINT = 'attempts_contact_id_fkey';
    END IF;
    IF no_campaign IS NOT NULL THEN
        RAISE EXCEPTION 'attempts: campaign % does not exist', no_campaign
            USING ERRCODE = 'foreign_key_violation', TABLE = 'attempts',
                  COLUMN = 'campaign_id', CONSTRAINT = 'attempts_campaign_id_fkey';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER attempts_checked AFTER INSERT ON attempts
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION attempts_checked();

-- What the foreign keys did on the other side: attempts go with their contact or campaign
-- (arrays, so that they are found through attempts' indexes whatever the rows gone).
CREATE FUNCTION attempts_of_deleted_contacts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM attempts WHERE contact_id = ANY (ARRAY(SELECT g.id FROM gone g));
    RETURN NULL;
END $$;
CREATE TRIGGER contacts_delete_their_attempts AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION attempts_of_deleted_contacts();

CREATE FUNCTION attempts_of_deleted_campaigns() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM attempts WHERE campaign_id = ANY (ARRAY(SELECT g.id FROM gone g));
    RETURN NULL;
END $$;
CREATE TRIGGER campaigns_delete_their_attempts AFTER DELETE ON campaigns
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION attempts_of_deleted_campaigns();

-- Keys that never change under the rows that name them (a trigger only on statements that set
-- the column, so no other update pays for it).
CREATE FUNCTION key_never_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%: % never changes', TG_TABLE_NAME, TG_ARGV[0]
        USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME, COLUMN = TG_ARGV[0];
END $$;
CREATE TRIGGER attempts_keep_their_contact BEFORE UPDATE OF contact_id ON attempts
    FOR EACH ROW WHEN (OLD.contact_id IS DISTINCT FROM NEW.contact_id)
    EXECUTE FUNCTION key_never_changes('contact_id');
CREATE TRIGGER attempts_keep_their_campaign BEFORE UPDATE OF campaign_id ON attempts
    FOR EACH ROW WHEN (OLD.campaign_id IS DISTINCT FROM NEW.campaign_id)
    EXECUTE FUNCTION key_never_changes('campaign_id');
CREATE TRIGGER contacts_keep_their_id BEFORE UPDATE OF id ON contacts
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION key_never_changes('id');
CREATE TRIGGER campaigns_keep_their_id BEFORE UPDATE OF id ON campaigns
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION key_never_changes('id');
