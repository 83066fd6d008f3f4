-- The laws a campaign is bound by (dialer/policy/packs.py): where each contact is, what each
-- attempt was counted against, and which rules were checked when it was claimed.

-- "US-FL", "US" (a US number whose state is unknown), "IN"; NULL: nothing told (the strictest
-- rule of the packs named binds it). From the row's state/region column, else the number.
ALTER TABLE contacts ADD COLUMN jurisdiction text
    CHECK (jurisdiction ~ '^[A-Z]{2}(-[A-Z0-9]{1,3})?$');

-- Caps count calls to a number on a subject across every campaign sharing it: the subject an
-- attempt was made on (the campaign's `subject`, else its name), and the rules (pack@version/
-- rule) and caps checked when it was claimed, for explaining any dial after the fact.
ALTER TABLE attempts ADD COLUMN subject text;
ALTER TABLE attempts ADD COLUMN rules_checked text[];
UPDATE attempts a SET subject = coalesce(k.spec ->> 'subject', k.name)
FROM campaigns k WHERE k.id = a.campaign_id AND a.subject IS NULL;
CREATE INDEX attempts_number_subject ON attempts (phone_e164, subject, requested_at);
