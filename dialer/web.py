"""The one web application of `dialer serve` (and of `run --serve` and `demo`), composed here
from its parts, each an application with its own keys and middleware:

- provider callbacks under /callbacks (dialer.callbacks.app), on the receiver's connections;
- the campaign API under /api/v1 (dialer.api.routes), with a `config`: tokens, problems;
- the dashboard's JSON and control under /api/campaigns (dialer.dashboard.api), its page at /;
- GET /metrics (dialer.metrics) and GET /healthz (the receiver's health).

Every response, errors included, carries the security headers (dashboard.api).
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from dialer.api.routes import PREFIX, api_app
from dialer.callbacks.app import Receiver, callbacks_app, healthz_handler
from dialer.config import DialerConfig
from dialer.dashboard.api import JSON_PREFIX, dashboard_app, favicon, page, security_headers
from dialer.metrics import metrics_handler
from dialer.supervise import Supervisor

CALLBACKS_PREFIX = "/callbacks"


def create_app(
    receiver: Receiver,
    *,
    supervisor: Supervisor | None = None,
    admin_token: str | None = None,
    config: DialerConfig | None = None,
    dashboard_pool: asyncpg.Pool | None = None,
    api_pool: asyncpg.Pool | None = None,
) -> web.Application:
    """The whole application. Callbacks use the receiver's connections; the dashboard (and
    /metrics) and the API may have their own (runtime.SERVE_USES). /healthz reads the
    process's `supervisor` (a fresh one: nothing has died)."""
    app = web.Application(client_max_size=1 << 20)
    app.on_response_prepare.append(security_headers)
    dashboard_pool = dashboard_pool or receiver.pool
    if config is not None:
        app.add_subapp(PREFIX, api_app(api_pool or receiver.pool, config))
    app.add_subapp(CALLBACKS_PREFIX, callbacks_app(receiver))
    dial_cap = config.max_dials_per_number_per_day if config is not None else None
    app.add_subapp(JSON_PREFIX, dashboard_app(dashboard_pool, admin_token, dial_cap=dial_cap))
    app.add_routes(
        [
            web.get("/", page),
            web.get("/favicon.ico", favicon),
            web.get("/healthz", healthz_handler(supervisor or Supervisor(), receiver.pool)),
            web.get("/metrics", metrics_handler(dashboard_pool)),
        ]
    )
    return app
