-- The same rule for a contact's number, '+', a first digit 1-9, then 5 to 14 more digits (the
-- regular expression '^\+[1-9][0-9]{5,14}$'), told without a regular expression: it is tested
-- on every contact a load writes, and string functions cost PostgreSQL about half as much as
-- the expression did (issue 16, item 1). tests/db/test_migrations.py checks the two agree.
ALTER TABLE contacts DROP CONSTRAINT contacts_phone_e164_check,
    ADD CONSTRAINT contacts_phone_e164_check CHECK (
        starts_with(phone_e164, '+') AND NOT starts_with(phone_e164, '+0')
        AND length(phone_e164) BETWEEN 7 AND 16
        AND btrim(phone_e164, '0123456789') = '+'
    ) NOT VALID;
ALTER TABLE contacts VALIDATE CONSTRAINT contacts_phone_e164_check;
