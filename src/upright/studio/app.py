"""The server behind `upright studio PROJECT` (HTTP contract: docs/contracts.md, "HTTP (studio)").

    GET  /                the studio page (static/; Collect, Review, Train, Test)
    GET  /test            serve's own test page, framed by the Test tab (serve/static/)
    GET  /api/events      server-sent events: "project", "audit", "job"
    /api/project, /api/classes..., /api/photos/..., /api/trash...   routes_collect.py
    /api/audit..., /api/train, /api/jobs..., /api/models/...         routes_train.py
    POST /api/predict, GET /api/model                              serve's app (middleware.TestRoutes)

Every bound of `upright serve` applies, through serve's own code: the connection limits of
serve.protocol.server_config, the request guard and the token (serve.guard.guard_app, with the
loopback-only Host check without --lan), the upload limits (uploads.py on serve.body), and one
decode budget (serve.budget) for the studio's decodes and its Test tab's; plus the project's
quota and the checks of names.py and store.py. Nothing a request sends is used as a path: class names are checked,
photos are named by their content, and ids must be in the index.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, StreamingResponse
from starlette.staticfiles import StaticFiles

from ..serve.app import STATIC_DIR as SERVE_STATIC
from ..serve.app import json_errors
from ..serve.defaults import DEFAULT_MAX_BYTES
from ..serve.guard import guard_app
from .defaults import DEFAULT_QUOTA_GB
from .middleware import ProjectPaths, TestRoutes, studio_csp
from .routes_collect import collect_routes
from .routes_train import train_routes
from .state import Studio

STATIC_DIR = Path(__file__).resolve().parent / "static"
REFRESH_SECONDS = 5.0  # photos added by hand show up within this


def _page_routes(app: FastAPI, st: Studio) -> None:
    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/test", include_in_schema=False)
    async def test_page():
        return FileResponse(SERVE_STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/healthz")
    async def healthz():
        return st.health()

    @app.get("/api/events")
    async def events():
        hello = {"version": st.project.version, "audit_runs": st.audit.runs}
        return StreamingResponse(st.events.stream(hello), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    app.mount("/assets", StaticFiles(directory=STATIC_DIR), name="assets")
    app.mount("/static", StaticFiles(directory=SERVE_STATIC), name="serve-static")


async def _keep_fresh(st: Studio) -> None:
    """Notice photos added or removed by hand (another verb, a file manager) while the studio runs."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(REFRESH_SECONDS)
        if await loop.run_in_executor(st.pool, st.project.refresh):
            st.changed()


def create_app(project, *, quota: int = int(DEFAULT_QUOTA_GB * 1e9), max_bytes: int = DEFAULT_MAX_BYTES,
               token: str | None = None) -> FastAPI:
    """The studio app for the folder `project` (created when missing).

    quota: bytes of photos (and trash) the project may hold. max_bytes: the largest request.
    token: with --lan, every request needs it (serve.access.TokenGate); without it, the Host
    must be a loopback name (serve.guard: against DNS rebinding).
    """
    st = Studio.open(project, quota=int(quota), max_bytes=int(max_bytes), lan=token is not None)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        st.start(asyncio.get_running_loop())
        fresh = asyncio.create_task(_keep_fresh(st))
        yield
        fresh.cancel()
        await st.tests.close()
        await asyncio.get_running_loop().run_in_executor(None, st.close)

    app = FastAPI(title="upright studio", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.studio = st
    app.state.max_bytes = st.max_bytes  # serve.app.server_config reads it (the lingering close)
    json_errors(app)
    _page_routes(app, st)
    collect_routes(app, st)
    train_routes(app, st)
    app.add_middleware(TestRoutes, studio=st)
    app.add_middleware(ProjectPaths, root=st.project.root)
    guard_app(app, token, csp=studio_csp, loopback_only=token is None)  # serve's limits, token, headers
    return app
