"""`dialer run`, `dialer serve`, `dialer sim-provider`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta

import asyncpg
import click
from click.core import ParameterSource

from dialer.cli.context import AppContext, pass_app
from dialer.cli.context import run as run_async
from dialer.db import reporting
from dialer.db.outage import DATABASE_FAILURES, Outage
from dialer.dispatch.dispatcher import (
    EXIT_BAD_CONFIG,
    EXIT_DONE,
    EXIT_ERROR,
    EXIT_WORK_LEFT,
    AccountRun,
    Dispatcher,
)
from dialer.dispatch.dry_run import dry_run as explain_dry_run
from dialer.durations import parse_duration, parse_rate
from dialer.errors import DialerError, InputError
from dialer.hosting import AcceptErrors, die_with_parent, raise_open_files_limit, watch_parent
from dialer.logs import setup as setup_logging
from dialer.metrics import metrics_app
from dialer.runtime import (
    BOTH,
    DIALING,
    SERVING,
    SERVING_WORKER,
    account_limits,
    adapters,
    callback_base,
    hosted,
    listen_address,
    open_runtime,
    selected_campaigns,
)
from dialer.sim.settings import SIM_DEFAULT_SECRET
from dialer.supervise import Death
from dialer.watch import run_end, watched

log_options = [
    click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning"])),
    click.option("--log-format", default="text", type=click.Choice(["text", "json"])),
]


def with_logging(command):
    for option in reversed(log_options):
        command = option(command)
    return command


log = logging.getLogger("dialer.run")

# A database away when run or serve starts (a restart) is waited for this long, then named.
START_PATIENCE_S = 10.0
PARENT_ENV = "DIALER_SERVE_PARENT"  # a --worker's parent: it stops when that process dies
MAX_RUN = timedelta(days=7)  # --for: a run is started by cron, not left for weeks


def _deadline(until: str | None, for_: str | None) -> datetime | None:
    if until and for_:
        raise InputError("give --until or --for, not both")
    now = datetime.now().astimezone()
    if for_:
        try:
            return now + parse_duration(for_, at_least=timedelta(seconds=1), at_most=MAX_RUN)
        except ValueError as exc:
            raise InputError(f"--for: {exc}") from None
    if until:
        try:
            hour, minute = (int(part) for part in until.split(":"))
            when = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        except ValueError:
            raise InputError(f"--until: expected HH:MM, got {until!r}") from None
        return when if when > now else when + timedelta(days=1)
    return None


@click.command()
@click.argument("campaigns", nargs=-1)
@click.option("--until", metavar="HH:MM", help="Stop claiming at this local time.")
@click.option("--for", "for_", metavar="DURATION", help="Stop claiming after this long (30m, 2h).")
@click.option("--wait", is_flag=True, help="Before exiting, wait for calls in flight to settle.")
@click.option("--serve", is_flag=True, help="Also receive callbacks in this process.")
@click.option(
    "--host", help="--serve: listen host (default: `listen` in dialer.toml, else 127.0.0.1)."
)
@click.option("--port", type=int, help="--serve: listen port (default 8080).")
@click.option("--dry-run", is_flag=True, help="Show who would be dialed now, and why not the rest.")
@click.option(
    "--metrics-port",
    type=int,
    help="Serve Prometheus metrics at GET /metrics on this port (--serve: on its port too).",
)
@click.option(
    "--dial-cap",
    type=click.IntRange(1, 100),
    help="Dials per number per 24 h across all campaigns (default: max_dials_per_number_per_day"
    " in dialer.toml, else 2).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: --dry-run's answer, or the run's closing summary, as JSON on stdout.",
)
@with_logging
@pass_app
@click.pass_context
def run(
    ctx: click.Context,
    app: AppContext,
    campaigns,
    until,
    for_,
    wait,
    serve,
    host,
    port,
    dry_run,
    dial_cap,
    metrics_port,
    fmt,
    log_level,
    log_format,
):
    """Dial CAMPAIGNS (default: every active campaign) within their accounts' shared rate and
    channel limits and each contact's calling window.

    \b
    Exit codes, for cron:
      0  all work done (nothing left to dial; with --wait, every call settled)
      3  stopped by the calling window, --until/--for or a signal, with work left
      2  bad configuration or input (including a provider refusing the account's credentials:
         its campaigns are paused with the reason)
      1  any other error
    SIGTERM/SIGINT: stop claiming, finish and record the requests in flight, release the rest.
    The database may go away (restart, failover, read-only, timeouts): run stops claiming,
    keeps the answers of requests already sent, and goes on when it is back; after
    `database_outage_limit` (dialer.toml, default 5m) it exits 1.
    Without --until/--for, run waits at most 60 s for the next contact to become due.
    On a terminal, a live view shows what is dialed (warnings print above it; give
    --log-level to see every line); the last lines say what was sent, why the run stopped and
    why the contacts left wait (the same reasons as --dry-run and `campaign show`).
    """
    setup_logging(log_level, log_format)
    config = app.config
    deadline = _deadline(until, for_)
    raise_open_files_limit()
    dial_cap = dial_cap if dial_cap is not None else config.max_dials_per_number_per_day
    host, port = listen_address(config, host, port)
    base = callback_base(config, host, port)
    providers = adapters(config)

    async def go() -> int:
        AcceptErrors().install(asyncio.get_running_loop())
        profile = BOTH if serve else DIALING
        patience = min(config.outage_limit_s, START_PATIENCE_S)
        async with open_runtime(
            app.database_url, providers, base, profile=profile, patience_s=patience
        ) as runtime:
            pool = runtime.pool
            outage = Outage(limit_s=config.outage_limit_s, pool=pool)
            if dry_run:
                refused: list[str] = []
                async with pool.acquire() as conn:
                    chosen = await selected_campaigns(conn, campaigns, config, refused)
                    await explain_dry_run(conn, chosen, dial_cap=dial_cap, as_json=fmt == "json")
                for message in refused:
                    print(f"dialer: error: would not dial: {message}", file=sys.stderr)
                return EXIT_BAD_CONFIG if refused else 0

            skipped: list[str] = []

            async def prepare() -> list:
                skipped.clear()
                async with pool.acquire() as conn:
                    chosen = await selected_campaigns(conn, campaigns, config, skipped)
                names = sorted({a for c in chosen for a in c.accounts})
                await runtime.register([account_limits(name, config) for name in names])
                return chosen

            chosen = await outage.retrying("starting", prepare)
            names = sorted({a for c in chosen for a in c.accounts})
            for message in skipped:  # said first and last: the others are dialed meanwhile
                print(f"dialer: error: not dialed: {message}", file=sys.stderr)
            if not chosen:
                if not skipped:
                    print("dialer: no active campaign to run", file=sys.stderr)
                return EXIT_BAD_CONFIG if skipped else 0
            runs = [
                AccountRun(
                    account_limits(name, config),
                    providers[name],
                    [c for c in chosen if name in c.accounts],
                    caller_ids=config.accounts[name].caller_ids,
                )
                for name in names
            ]
            dispatcher = runtime.dispatcher(
                runs, outage, deadline=deadline, wait=wait, dial_cap=dial_cap
            )
            await runtime.begin(config.webhooks, stop=dispatcher.signalled, outage=outage)
            token = config.admin_token.get_secret_value() if config.admin_token else None
            serving = runtime.hosting(host, port, admin_token=token, config=config)
            metrics = (
                hosted(metrics_app(pool), host, metrics_port)
                if metrics_port
                else contextlib.nullcontext()
            )

            async def last_attempt() -> int:
                async with pool.acquire() as conn:
                    return await reporting.last_attempt_id(conn)

            since = await outage.retrying("starting", last_attempt)
            explicit_level = ctx.get_parameter_source("log_level") is not ParameterSource.DEFAULT
            async with serving, metrics:
                code = await watched(
                    dispatcher.run(),
                    pool,
                    chosen,
                    since,
                    "dialer run",
                    quiet_logs=not explicit_level and log_format == "text",
                )
            errors = []
            if dispatcher.account_failure:
                errors.append(dispatcher.account_failure)
            errors += [f"stopped dialing: {message}" for message in dispatcher.refused.values()]
            failure = dispatcher.failure
            if failure is not None:
                said = str(failure) if isinstance(failure, DialerError) else repr(failure)
                errors.append(f"stopped: {said}")
            errors += [f"not dialed: {message}" for message in skipped]
            if skipped and code in (EXIT_DONE, EXIT_WORK_LEFT):
                code = EXIT_BAD_CONFIG  # the others were dialed; this needs a person
            await _say_closing(pool, dispatcher, chosen, since, dial_cap, code, errors, fmt)
            return code

    sys.exit(run_async(go()))


async def _say_closing(
    pool: asyncpg.Pool,
    dispatcher: Dispatcher,
    chosen: list,
    since: int,
    dial_cap: int,
    code: int,
    errors: list[str],
    fmt: str,
) -> None:
    """The run's last lines on stderr, with its exit code as it will be (and one log line with
    the same figures); with `--format json`, the same as one JSON object on stdout."""
    if dispatcher.stopped_by_signal:
        ended = ["a signal (SIGTERM/SIGINT) asked it to stop"]
    else:
        ended = sorted(
            {f"{a.ended} (account {a.limits.name})" for a in dispatcher.accounts if a.ended}
        )
    meaning = EXIT_MEANINGS.get(code, "error")
    said: dict[str, object] = {"exit_code": code, "meaning": meaning}
    try:
        end = await run_end(
            pool, chosen, since, dialed_here=dispatcher.dialed, ended=ended, dial_cap=dial_cap
        )
        lines = end.lines()
        said |= end.to_json()
    except DATABASE_FAILURES as exc:
        unread = f"the campaigns' counts could not be read: {type(exc).__name__}"
        lines = [
            f"dialer: this run sent {dispatcher.dialed:,} calls",
            *(f"dialer: stopped because {why}" for why in ended),
            f"dialer: {unread}",
        ]
        said |= {"sent_by_this_run": dispatcher.dialed, "stopped_because": ended, "unread": unread}
    log.info("run ended", extra={"exit_code": code, "sent": dispatcher.dialed, "ended": ended})
    for line in lines:
        print(line, file=sys.stderr)
    for error in errors:
        print(f"dialer: error: {error}", file=sys.stderr)
    print(f"dialer: exit {code} ({meaning})", file=sys.stderr)
    if fmt == "json":
        print(json.dumps(said | {"errors": errors}, ensure_ascii=False))


EXIT_MEANINGS: dict[int, str] = {
    EXIT_DONE: "all work done",
    EXIT_WORK_LEFT: "stopped with work left",
    EXIT_BAD_CONFIG: "bad configuration or input",
    EXIT_ERROR: "error",
}


@click.command()
@click.option("--host", help="Listen host (default: `listen` in dialer.toml, else 127.0.0.1).")
@click.option("--port", type=int, help="Listen port (default: `listen` in dialer.toml, else 8080).")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes sharing the port (SO_REUSEPORT); the reconciler runs in the first only."
    " With 1, a port already in use is refused (exit 2).",
)
@click.option("--worker", is_flag=True, hidden=True)
@with_logging
@pass_app
def serve(app: AppContext, host, port, workers, worker, log_level, log_format):
    """Receive provider callbacks (POST /callbacks/ACCOUNT[/ATTEMPT]), run the reconciler, and
    serve the live dashboard (GET /; its JSON and pause/resume/cancel under /api/, control
    needing admin_token from dialer.toml), the campaign API under /api/v1 (tokens from [api]
    in dialer.toml; described at /api/v1/openapi.json), GET /metrics (Prometheus) and GET
    /healthz; deliver the [[webhooks]] of dialer.toml. Runs until SIGTERM/SIGINT (which it
    passes on to its workers)."""
    setup_logging(log_level, log_format)
    config = app.config
    host, port = listen_address(config, host, port)
    base = callback_base(config, host, port)
    providers = adapters(config)
    parent = os.environ.get(PARENT_ENV) if worker else None
    if parent is not None:
        die_with_parent(int(parent))
    raise_open_files_limit()
    child_env = os.environ | {PARENT_ENV: str(os.getpid())}
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "dialer", *sys.argv[1:], "--worker", "--workers", "1"],
            env=child_env,
        )
        for _ in range(workers - 1)
    ]

    async def go() -> Death | None:
        AcceptErrors().install(asyncio.get_running_loop())
        patience = min(config.outage_limit_s, START_PATIENCE_S)
        # one reconciler and webhook deliverer per server, not per worker process
        profile = SERVING_WORKER if worker else SERVING
        async with open_runtime(
            app.database_url, providers, base, profile=profile, patience_s=patience
        ) as runtime:
            outage = Outage(limit_s=config.outage_limit_s, pool=runtime.pool)
            limits = [account_limits(name, config) for name in config.accounts]
            # status look-ups are paced by the shared clock: every account needs its row
            await outage.retrying("starting", lambda: runtime.register(limits))
            watching = (
                asyncio.create_task(watch_parent(int(parent), runtime.stopping.set))
                if parent is not None
                else None
            )
            await runtime.begin(config.webhooks, outage=outage)
            token = config.admin_token.get_secret_value() if config.admin_token else None
            hosting = runtime.hosting(
                host, port, admin_token=token, config=config, share_port=workers > 1 or worker
            )
            async with hosting:
                if not worker:
                    print(f"dialer: receiving callbacks on http://{host}:{port}", file=sys.stderr)
                await runtime.stopping.wait()
            if watching is not None:
                watching.cancel()
            return runtime.failure

    try:
        failure = run_async(go())
        if failure is not None:  # systemd restarts it; a process that no longer works
            print(f"dialer: error: {failure.said()}", file=sys.stderr)
            sys.exit(1)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=10)


@click.command("sim-provider")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8099, show_default=True)
@click.option("--rate", default="200/min", show_default=True, help="'N/s', 'N/min' or 'unlimited'.")
@click.option("--channels", default=16, show_default=True, help="0 for unlimited.")
@click.option("--seed", default=1, show_default=True)
@click.option(
    "--outcomes", default="completed=0.6,no-answer=0.2,busy=0.15,failed=0.05", show_default=True
)
@click.option("--ring", default="2s..20s", show_default=True)
@click.option("--talk", default="10s..120s", show_default=True)
@click.option("--duplicates", default=0.0, show_default=True, help="Share of events sent twice.")
@click.option("--reorder", default=0.0, show_default=True, help="Share of events delivered late.")
@click.option("--secret", default=SIM_DEFAULT_SECRET, show_default=True, envvar="DIALER_SIM_SECRET")
@click.option("--no-callbacks", is_flag=True, help="Place calls but send no status callbacks.")
@click.option(
    "--lose-final",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of calls whose final callback is never sent (a provider's webhook outage).",
)
@click.option(
    "--declines",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of calls the person declines: busy (SIP 486) or failed (603), half each.",
)
@click.option(
    "--blocked",
    multiple=True,
    metavar="CALLER_ID=SHARE",
    help="Share of this caller id's calls a carrier blocks (failed, SIP 603); repeatable.",
)
@click.option(
    "--journal",
    type=click.Path(dir_okay=False),
    help="Append each accepted call (id, number, attempt, outcome) to this file as JSON lines.",
)
def sim_provider(
    host,
    port,
    rate,
    channels,
    seed,
    outcomes,
    ring,
    talk,
    duplicates,
    reorder,
    secret,
    no_callbacks,
    lose_final,
    declines,
    blocked,
    journal,
):
    """Run the built-in simulated telephony provider: a real HTTP calls API that enforces its
    rate (429 + Retry-After) and channels, plays each call's life with seeded outcomes, sends
    signed status callbacks (optionally duplicated or out of order), and reports what it saw
    at GET /stats."""
    from dialer.sim.server import create_app as create_sim
    from dialer.sim.settings import SimSettings, parse_blocked, parse_outcomes, parse_range

    try:
        settings = SimSettings(
            secret=secret,
            rate=None if rate == "unlimited" else parse_rate(rate),
            channels=channels,
            seed=seed,
            outcomes=parse_outcomes(outcomes),
            ring=parse_range(ring),
            talk=parse_range(talk),
            duplicates=duplicates,
            reorder=reorder,
            callbacks=not no_callbacks,
            lose_final=lose_final,
            journal=journal,
            declines=declines,
            blocked=parse_blocked(blocked),
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None

    async def go() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            if signal.getsignal(signum) is not signal.SIG_IGN:
                loop.add_signal_handler(signum, stopping.set)
        async with hosted(create_sim(settings), host, port):
            print(f"dialer: sim provider on http://{host}:{port}", file=sys.stderr)
            await stopping.wait()

    run_async(go())
