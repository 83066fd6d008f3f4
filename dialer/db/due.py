"""What makes a contact due now: the one definition, as SQL over a contact `c`.

A contact is due when every test of DUE holds, in this order of blame: it is `pending`, its
number is not on the do-not-call list, its retry delay is over (`next_attempt_at`), and its
calling window (days, hours, holidays, dates, in each of its zones) is open. The claim picks due
contacts; the dry run names the first test each other contact fails; metrics count them. The
daily dial cap and "live in another campaign" are judged by the claim after it locks the
numbers (they need a fresh snapshot), and a contact they stop gets a `next_attempt_at`, so the
retry test covers it afterwards. When the next contact becomes due is the Python reading of the
same tests (policy.due.next_due, over contacts.first_due_per_zone).
"""

from __future__ import annotations


def window_sql(zone: int, at: str = "now()", *, laws: bool = True) -> tuple[str, str]:
    """(the FROM item, the condition) testing the window in SQL for contacts `c` at the instant
    `at` (the database clock), with the parameters of CallingRules.sql_parameters() numbered
    from $`zone` on. A contact's one or two zones ("WEST EAST") are both tested; one zone is
    tested twice, at no real cost. The same reading as CallingRules.is_open (tests/policy
    checks that they agree). Without `laws`, the campaign's own window, which the laws' hours
    only narrow: what `c.timezone` alone allows (it reads no other column of `c`)."""
    tz = f"coalesce(c.timezone, ${zone})"
    s, e, days, holidays, first, last, keys, starts, ends = (f"${zone + i}" for i in range(1, 10))
    lateral = (
        f"CROSS JOIN LATERAL (SELECT {at} AT TIME ZONE split_part({tz}, ' ', 1) AS lt,"
        f" {at} AT TIME ZONE coalesce(nullif(split_part({tz}, ' ', 2), ''),"
        f" split_part({tz}, ' ', 1)) AS lt2 OFFSET 0) w"
    )
    if laws:
        lateral += f" {jurisdiction_hours_sql(keys, starts, ends)}"
        s = f"greatest({s}::time, coalesce(jh.s, {s}::time))"
        e = f"least({e}::time, coalesce(jh.e, {e}::time))"
    else:
        s, e = f"{s}::time", f"{e}::time"
    tests = [
        f"w.{lt}::time >= {s} AND w.{lt}::time < {e}"
        f" AND extract(isodow FROM w.{lt})::int = ANY({days}::int[])"
        f" AND NOT (w.{lt}::date = ANY({holidays}::date[]))"
        f" AND ({first}::date IS NULL OR w.{lt}::date >= {first})"
        f" AND ({last}::date IS NULL OR w.{lt}::date <= {last})"
        for lt in ("lt", "lt2")
    ]
    return lateral, "(" + " AND ".join(tests) + ")"


def jurisdiction_key_sql(keys: str) -> str:
    """The jurisdiction key binding contact `c` among the array `keys` (packs.CampaignRules
    .key_for: its own, else its country's '-*', else '*'; '?' when it has none)."""
    country = "split_part(c.jurisdiction, '-', 1) || '-*'"
    return (
        f"CASE WHEN c.jurisdiction IS NULL THEN '?'"
        f" WHEN c.jurisdiction = ANY({keys}::text[]) THEN c.jurisdiction"
        f" WHEN strpos(c.jurisdiction, '-') > 0 AND {country} = ANY({keys}::text[])"
        f" THEN {country} ELSE '*' END"
    )


def jurisdiction_hours_sql(keys: str, starts: str, ends: str) -> str:
    """FROM items giving contact `c` its jurisdiction key (`jk.key`) and that key's hours
    (`jh.s`, `jh.e`; NULL where no law sets hours). OFFSET 0 keeps the hours a look-up per
    contact (a nested loop): joined by hash, the contacts' order would be lost, and a pick
    in dialing order would read and sort every due contact of its range instead of the first."""
    return (
        f"CROSS JOIN LATERAL (SELECT {jurisdiction_key_sql(keys)} AS key) jk"
        f" LEFT JOIN LATERAL (SELECT u.s, u.e FROM unnest({keys}::text[], {starts}::time[],"
        f" {ends}::time[]) AS u(k, s, e) WHERE u.k = jk.key OFFSET 0) jh ON true"
    )


from dialer.db.consent import LIVE_GRANT  # noqa: E402 (the rule is the ledger's)

# What a waiting contact is told it waits for (the verdicts; dialer/waiting.py reads them).
VERDICT_DUE = "due now"
NOT_PENDING = "not pending"
DO_NOT_CALL = "do-not-call"
NO_CONSENT = "no consent"
RETRY_DELAY = "retry delay"
HOLIDAY = "holiday"
OUTSIDE_WINDOW = "outside calling window"
# Holds the claim or the dispatcher puts on a contact (contacts.held_by), blamed instead of
# the retry delay while they last.
HELD_DIAL_CAP = "daily dial cap"
HELD_LIVE = "live elsewhere"
HELD_LAW_CAP = "law cap"
HELD_CALL_LIST = "call list unreadable"

PENDING = "c.state = 'pending'"
NOT_LISTED = "NOT EXISTS (SELECT 1 FROM dnc d WHERE d.phone_e164 = c.phone_e164)"
RETRY_OVER = "(c.next_attempt_at IS NULL OR c.next_attempt_at <= now())"


def _said(verdict: str) -> str:
    return f"'{verdict}'"


def due_tests(window_param: int) -> tuple[str, list[tuple[str, str]]]:
    """(the FROM item the window needs, [(what failing it is called, as SQL; its SQL test)]),
    the window's parameters (CallingRules.sql_parameters) numbered from $`window_param`. Every
    reader of "due" builds on this. A contact whose next attempt was put off by a hold
    (`held_by`) is blamed on that hold, not on a retry delay; a holiday is named as such (the
    window test covers it too)."""
    lateral, in_window = window_sql(window_param)
    scope = f"${window_param + 10}::text"
    holidays = f"${window_param + 4}::date[]"
    consented = f"({scope} IS NULL OR {LIVE_GRANT.format(phone='c.phone_e164', scope=scope)})"
    return lateral, [
        (_said(NOT_PENDING), PENDING),
        (_said(DO_NOT_CALL), NOT_LISTED),
        (_said(NO_CONSENT), consented),
        (f"coalesce(c.held_by, {_said(RETRY_DELAY)})", RETRY_OVER),
        (_said(HOLIDAY), f"NOT (w.lt::date = ANY({holidays}))"),
        (_said(OUTSIDE_WINDOW), in_window),
    ]


def due_condition(window_param: int) -> tuple[str, str]:
    """(the FROM item, the condition that a contact is due now)."""
    lateral, tests = due_tests(window_param)
    return lateral, " AND ".join(test for _, test in tests)


def verdict_sql(window_param: int) -> tuple[str, str]:
    """(the FROM item, a CASE naming the first test a contact fails, else VERDICT_DUE)."""
    lateral, tests = due_tests(window_param)
    cases = " ".join(f"WHEN NOT {test} THEN {name}" for name, test in tests)
    return lateral, f"CASE {cases} ELSE {_said(VERDICT_DUE)} END"
