-- Why a waiting contact is not due (dialer/waiting.py): when its next_attempt_at was set by a
-- hold rather than by its retry delay, which hold ("daily dial cap", "live elsewhere", "law
-- cap", "call list unreadable") and its figure ("2 per number per 24 h"). NULL: the retry
-- delay of its last outcome (or nothing). Cleared whenever an attempt settles.
ALTER TABLE contacts ADD COLUMN held_by text;
ALTER TABLE contacts ADD COLUMN held_figure text;
