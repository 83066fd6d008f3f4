-- One reconciler round every two seconds across every process, not one per process (issue 16,
-- item 4). Each `dialer run` and `dialer serve` reconciles (expired reservations, orphan
-- events, silent calls, the idle rate): five reads a round each, every 2 s, whether or not
-- another process read the same a moment ago; with calls of minutes, 16 statements a settled
-- call for a run and a server. A round now begins by taking the turn: the row's time moves to
-- now() only if no process took it within the last 1.5 s (dialer.reconcile.TURN), and only the
-- process that moved it does the round. A process paused or gone after taking it holds it for
-- 1.5 s: the next process to ask takes it then.
CREATE TABLE reconciler_turns (
    name text PRIMARY KEY,
    taken_at timestamptz NOT NULL
);
INSERT INTO reconciler_turns (name, taken_at) VALUES ('rounds', '-infinity');
