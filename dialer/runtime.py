"""One dialer process, assembled in one place (Runtime), and what its commands share: accounts
from config, campaigns from the database, the callback base URL, the HTTP client session, and
hosting web apps.

`run`, `serve`, `demo` and `call-test` each state a Profile (dialing, serving, both; with or
without the background tasks and signal handling) and get one Runtime wired for it in one
place (Runtime.begin, Runtime.hosting, Runtime.dispatcher): its pools, its HTTP session, its
accounts' adapters, the receiver that stores and applies provider events, and its background
tasks (the reconciler, webhook delivery), each named and watched. A task that dies is logged,
makes /healthz answer 503 and stops the process, which exits non-zero (dialer.supervise).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from dialer.callbacks.app import Receiver, reconcile_forever
from dialer.campaign_checks import refuse_unsupported
from dialer.campaigns import Campaign, CampaignCache, from_row
from dialer.config import DialerConfig, WebhookConfig
from dialer.db import campaigns as stored
from dialer.db import webhooks
from dialer.db.attempts import CHANNEL_FREED
from dialer.db.campaigns import CAMPAIGN_STATUS
from dialer.db.connect import open_pool
from dialer.db.outage import Outage
from dialer.db.types import Connection
from dialer.db.webhooks import WEBHOOK_DUE
from dialer.dispatch.account_run import AccountRun
from dialer.dispatch.claim import register_account
from dialer.dispatch.dispatcher import Dispatcher
from dialer.dispatch.limiter import AccountLimits
from dialer.dispatch.pg_store import PgDispatchStore
from dialer.errors import ConfigError, InputError, NotFoundError
from dialer.providers.base import Provider
from dialer.providers.registry import adapter_for
from dialer.providers.send_deadline import (
    CLIENT_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    abortive_socket,
    deadline_tracing,
)
from dialer.registries import stale_copies
from dialer.supervise import Death, Supervisor
from dialer.wakeups import Wakeups, listen
from dialer.web import create_app
from dialer.webhooks.deliver import deliver_forever, keep_endpoints_forever

log = logging.getLogger("dialer.run")
DEFAULT_LISTEN = "127.0.0.1:8080"


# Database connections per use in `dialer serve` (and `run --serve`): each use has capacity of
# its own, so no use can starve another (results streamed to a client that never reads, a
# flood of dashboard requests): callbacks, what providers retry against, always keep theirs.
SERVE_USES = {
    "callbacks": 8,
    "reconciler": 2,
    "webhooks": 2,
    "dashboard": 2,
    "api": 3,
    "listening": 1,
}
# `listening`: the one connection that hears PostgreSQL's notices (dialer.wakeups), held throughout
RUN_USES = {"dialing": 8, "reconciler": 2, "listening": 1}
ONE_OFF_USES = {"main": 4}  # a process that neither dials nor serves (call-test --no-serve)


@dataclass(frozen=True)
class Profile:
    """What one process does; Runtime wires what each part implies, once."""

    dials: bool  # claims and sends calls (a Dispatcher)
    serves: bool  # hosts callbacks, the API, the dashboard, /metrics and /healthz
    background: bool = True  # runs the reconciler, and (serving) delivers webhooks
    signals: bool = True  # SIGTERM/SIGINT stop it gracefully
    one_off: bool = False  # a short command: a few connections in one pool

    @property
    def uses(self) -> dict[str, int]:
        """Its database connections per use, each use a pool of its own."""
        if self.one_off:
            return ONE_OFF_USES
        uses = (RUN_USES if self.dials else {}) | (SERVE_USES if self.serves else {})
        return uses or ONE_OFF_USES


DIALING = Profile(dials=True, serves=False)  # dialer run
SERVING = Profile(dials=False, serves=True)  # dialer serve
BOTH = Profile(dials=True, serves=True)  # dialer run --serve
SERVING_WORKER = Profile(dials=False, serves=True, background=False)  # serve --workers: others
DEMO = Profile(dials=True, serves=True, signals=False)  # dialer demo (Ctrl-C: dialer.entry)


class Runtime:
    """The parts of one dialer process, and its watched background tasks."""

    def __init__(
        self,
        pools: dict[str, asyncpg.Pool] | asyncpg.Pool,
        session: aiohttp.ClientSession,
        adapters: dict[str, Provider],
        public_url: str,
        profile: Profile = DIALING,
    ) -> None:
        self.profile = profile
        self.pools = pools if isinstance(pools, dict) else {"main": pools}
        self.pool = next(iter(self.pools.values()))  # the first use's: dialing, or callbacks
        self.session = session
        self.adapters = adapters
        self.cache = CampaignCache()
        self.stopping = asyncio.Event()
        self.public_url = public_url
        # The process's health: a watched task that dies stops the process (exit 1), and
        # /healthz, the dispatcher and the exit message name it.
        self.supervisor = Supervisor()
        self.supervisor.on_death(lambda death: self.stopping.set())
        self._receiver: Receiver | None = None
        self._tasks: dict[str, asyncio.Task] = {}
        # told by PostgreSQL's notices, heard by one task (hear()): claim loops wait for a free
        # channel of their account, deliverers for deliveries to their endpoint
        self.freed_channels = Wakeups()
        self.webhooks_due = Wakeups()
        self.campaign_statuses = Wakeups()  # claim loops keep the active campaigns until told

    @property
    def failure(self) -> Death | None:
        """The background task that died, and why, if one did."""
        return self.supervisor.death

    @property
    def receiver(self) -> Receiver:
        """The callback receiver (built when the process serves)."""
        if self._receiver is None:
            self._receiver = Receiver(
                self.pool_for("callbacks"), self.adapters, self.public_url, self.session, self.cache
            )
        return self._receiver

    def start(self, name: str, work: Coroutine[Any, Any, None]) -> asyncio.Task:
        """Run `work` as the background task `name`, watched by the supervisor: if it ends
        other than by cancellation, the process fails."""
        task = asyncio.create_task(work, name=name)
        self._tasks[name] = task
        self.supervisor.watch(task)
        return task

    def pool_for(self, use: str) -> asyncpg.Pool:
        """The connections of one use (SERVE_USES), else the process's first pool."""
        return self.pools.get(use, self.pool)

    def hear(self) -> None:
        """Listen for PostgreSQL's notices (dialer.wakeups), once per process, where it has a
        connection for them; else the loops that wait for them wait out their timeouts."""
        if "listening" in self.pools and "notices" not in self._tasks:
            channels = {
                CHANNEL_FREED: self.freed_channels,
                WEBHOOK_DUE: self.webhooks_due,
                CAMPAIGN_STATUS: self.campaign_statuses,
            }
            self.start("notices", listen(self.pools["listening"], channels))

    def start_reconciler(self) -> asyncio.Task:
        work = reconcile_forever(
            self.pool_for("reconciler"), self.cache, self.adapters, self.session
        )
        return self.start("reconciler", work)

    async def subscribe(self, hooks: list[WebhookConfig], outage: Outage | None = None) -> None:
        """Register the configured webhook endpoints: state changes write their events from
        now on, whichever process makes them; and keep saying so every minute, while endpoints
        no process names any more are forgotten (webhooks.keep_endpoints_forever). A database
        restarting meanwhile is waited out (`outage`: the process's patience)."""

        async def register() -> None:
            async with self.pool.acquire() as conn:
                await webhooks.register(
                    conn,
                    {h.endpoint: list(h.events) for h in hooks},
                    {h.legacy_endpoint: h.endpoint for h in hooks},
                )

        if hooks:
            waiting = outage or Outage(pool=self.pool)
            await waiting.retrying("registering webhook endpoints", register)
        names = [h.endpoint for h in hooks]
        self.start("webhook endpoints", keep_endpoints_forever(self.pool_for("webhooks"), names))

    def start_webhooks(self, hooks: list[WebhookConfig]) -> None:
        """Deliver the outbox to each endpoint (one watched task each)."""
        self.hear()
        for hook in hooks:
            pool = self.pool_for("webhooks")
            work = deliver_forever(pool, hook, self.webhooks_due)
            self.start(f"webhooks {hook.endpoint}", work)

    async def begin(
        self,
        hooks: list[WebhookConfig],
        *,
        stop: Callable[[], None] | None = None,
        outage: Outage | None = None,
    ) -> None:
        """Start what the profile implies: signal handling (calling `stop`), the webhook
        subscriptions (waiting out a database away, as `outage` allows), and the background
        tasks (reconciler; serving, webhook delivery)."""
        if self.profile.signals:
            self.stop_on_signals(stop)
        await self.subscribe(hooks, outage)
        if self.profile.background:
            self.start_reconciler()
            if self.profile.serves:
                self.start_webhooks(hooks)

    def hosting(
        self,
        host: str,
        port: int,
        *,
        admin_token: str | None = None,
        config: DialerConfig | None = None,
        share_port: bool = False,
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Serve the web application on host:port while the block runs, if the profile serves."""
        if not self.profile.serves:
            return contextlib.nullcontext()
        app = self.web_app(admin_token=admin_token, config=config)
        return hosted(app, host, port, share_port=share_port)

    def dispatcher(self, runs: list[AccountRun], outage: Outage, **options: Any) -> Dispatcher:
        """The Dispatcher of a dialing profile, on this runtime's store, session and health:
        a background task that dies stops it as failed, a signal stops it gracefully."""
        store = PgDispatchStore(
            self.pool_for("dialing"), self.cache, self.freed_channels, self.campaign_statuses
        )
        self.hear()
        dispatcher = Dispatcher(
            store,
            self.session,
            runs,
            self.public_url,
            outage=outage,
            supervisor=self.supervisor,
            **options,
        )
        self.on_failure(dispatcher.fail)
        return dispatcher

    def on_failure(self, callback: Callable[[BaseException], None]) -> None:
        """Also tell `callback` when a background task dies (the dispatcher stops as failed)."""
        self.supervisor.on_death(lambda death: callback(RuntimeError(death.said())))

    def stop_on_signals(self, stop: Callable[[], None] | None = None) -> None:
        """SIGTERM and SIGINT call `stop` (default: set `stopping`)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop or self.stopping.set)

    def web_app(
        self, admin_token: str | None = None, config: DialerConfig | None = None
    ) -> web.Application:
        """Callbacks, /healthz, /metrics and the dashboard, on this runtime's receiver; with a
        `config`, the campaign API too."""
        return create_app(
            self.receiver,
            supervisor=self.supervisor,
            admin_token=admin_token,
            config=config,
            dashboard_pool=self.pool_for("dashboard"),
            api_pool=self.pool_for("api"),
        )

    async def register(self, limits: list[AccountLimits]) -> None:
        """Create or refresh these accounts' shared limiter rows."""
        async with self.pool.acquire() as conn:
            for account in limits:
                # waits, and may time out, while another process holds the row's lock
                await register_account(conn, account)

    async def close(self) -> None:
        """Cancel the background tasks and wait for them (a task that died was reported by
        the supervisor when it did: its error is not raised again here)."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)


@asynccontextmanager
async def open_runtime(
    database_url: str,
    adapters: dict[str, Provider],
    public_url: str,
    *,
    profile: Profile = DIALING,
    patience_s: float = 0.0,
) -> AsyncIterator[Runtime]:
    """A Runtime on fresh pools (one per use, of its size; the schema checked once) and HTTP
    session, closed (tasks first) when the block ends. A database away at start is waited
    for up to `patience_s` (the outage limit of run and serve)."""
    uses = profile.uses
    async with contextlib.AsyncExitStack() as stack:
        pools = {}
        for index, (use, size) in enumerate(uses.items()):
            pools[use] = await stack.enter_async_context(
                open_pool(database_url, size=size, migrate_first=index == 0, patience_s=patience_s)
            )
        session = await stack.enter_async_context(http_session())
        runtime = Runtime(pools, session, adapters, public_url, profile)
        try:
            yield runtime
        finally:
            await runtime.close()


def listen_address(config: DialerConfig, host: str | None, port: int | None) -> tuple[str, int]:
    default_host, _, default_port = (config.listen or DEFAULT_LISTEN).rpartition(":")
    return host or default_host, port or int(default_port)


def callback_base(config: DialerConfig, host: str, port: int) -> str:
    """Where providers send callbacks: `public_url`, else this process's listen address."""
    if config.public_url:
        return str(config.public_url).rstrip("/")
    return f"http://{host}:{port}"


def account_limits(name: str, config: DialerConfig) -> AccountLimits:
    account = config.accounts[name]
    rate = account.parsed_rate
    return AccountLimits(
        name,
        account.kind,
        rate.per_second,
        rate.per_seconds,
        account.channels,
        account.late_placement_span.total_seconds(),
    )


def adapters(config: DialerConfig) -> dict[str, Provider]:
    return {name: adapter_for(name, account) for name, account in config.accounts.items()}


async def selected_campaigns(
    conn: Connection,
    names: tuple[str, ...],
    config: DialerConfig,
    skipped: list[str] | None = None,
) -> list[Campaign]:
    """The named campaigns (all active ones if none named). A named campaign whose account is
    not configured, or whose packs find a registry copy too old (dialer.registries), is an
    error; an active one, when none is named, is left out (logged, and said in `skipped`) so
    that the others are still dialed."""
    skipped = [] if skipped is None else skipped
    if names:
        rows = await stored.by_names(conn, list(names))
        missing = sorted(set(names) - {r["name"] for r in rows})
        if missing:
            raise NotFoundError(
                f"no such campaign: {', '.join(missing)} (see `dialer campaign list`)"
            )
    else:
        rows = await stored.all_active(conn)
    campaigns = [from_row(r) for r in rows]
    chosen = []
    for campaign in campaigns:
        unknown = [name for name in campaign.accounts if name not in config.accounts]
        if unknown:
            source = config.source or "dialer.toml"
            message = (
                f"campaign {campaign.name} uses account {unknown[0]!r}, which {source}"
                " does not define (add an [accounts.NAME] section)"
            )
            if names:  # named: the run cannot do what it was asked
                raise ConfigError(message)
            log.error("campaign not dialed", extra={"reason": message})
            skipped.append(message)  # every active one: the others are dialed all the same
            continue
        refuse_unsupported(campaign.spec, config)
        chosen.append(campaign)
    stale = await stale_copies(conn, chosen)
    for campaign in [c for c in chosen if c.id in stale]:
        message = f"campaign {campaign.name}: " + "; ".join(stale[campaign.id])
        if names:
            raise ConfigError(message)
        log.error("campaign not dialed", extra={"reason": message})
        skipped.append(message)
    return [c for c in chosen if c.id not in stale]


@asynccontextmanager
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    """The one client session for provider requests: bounded in time, send deadlines checked
    before each request is written, and sockets that abort on close (providers.send_deadline)."""
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=500, limit_per_host=500, socket_factory=abortive_socket)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, trace_configs=[deadline_tracing()]
    ) as session:
        yield session


IDLE_TIMEOUT_S = 15.0  # a connection that has not completed a request by then is dropped


@asynccontextmanager
async def hosted(
    app: web.Application,
    host: str,
    port: int,
    *,
    share_port: bool = False,
    idle_timeout_s: float = IDLE_TIMEOUT_S,
) -> AsyncIterator[None]:
    """Serve `app` on host:port until the block ends.

    A port already in use is an error naming it, unless `share_port` (serve --workers: the
    processes of one server share it with SO_REUSEPORT): two unrelated servers must never
    split each other's callbacks. A client that connects and does not complete a request
    within `idle_timeout_s` (or sits idle that long between requests) is disconnected.
    """
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=idle_timeout_s)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=share_port or None)
        try:
            await site.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(
                    f"{host}:{port} is already in use (another dialer process, or another"
                    " program); choose another --port, or stop that one"
                ) from None
            raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        yield
    finally:
        await runner.cleanup()
