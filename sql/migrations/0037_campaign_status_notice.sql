-- Every change of a campaign's status is said on the channel `dialer_campaign_status` at its
-- commit (issue 16, item 4). A claim loop read which of its campaigns are `active` before
-- every claim round: one statement a round, 3.4 a settled call with calls of minutes
-- (bench/statements.py --timing real). Each process now keeps what it read and reads again
-- when this notice comes, every CONTROL_EVERY_S whatever comes (a notice lost), and every
-- round while it cannot hear notices (dispatch.pg_store, db.campaigns.CAMPAIGN_STATUS). The
-- guarantee does not rest on it: a send commits `dialing` only while its campaign is `active`
-- (db.attempts._BEGIN_DIAL), so a pause never lets a request leave, however late a loop hears of it.
-- One trigger, whichever statement changes a status (pause, resume, completion, a breaker, an
-- account refused, a campaign deleted): a statement naming `status` in its SET notifies even if
-- it changed no row, which costs a loop one read.
CREATE FUNCTION campaigns_status_said() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dialer_campaign_status', '');
    RETURN NULL;
END $$;

CREATE TRIGGER campaigns_status_said AFTER UPDATE OF status OR DELETE ON campaigns
    FOR EACH STATEMENT EXECUTE FUNCTION campaigns_status_said();
