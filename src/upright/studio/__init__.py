"""`upright studio PROJECT`: collect photos from a team's phones, audit them as they arrive,
review, train, test and export, all in the browser, on this machine (no network beyond the LAN).

    project.py   the DATA folder on disk and the index of its photos
    names.py     class names that are safe, portable folder names
    store.py     an upload checked through the one door, stored as its original bytes
    thumbs.py    thumbnails (upright and as stored), cached by content hash
    classes.py / trash.py   create, rename, move; nothing deleted, everything restorable
    live_audit.py  the metadata audit re-run after each batch, findings in words
    jobs.py / worker.py     train, content audit and export in worker processes, with progress
    models.py    the project's models, serve's app for the Test tab, the exports
    app.py, routes_*.py, middleware.py, events.py, uploads.py   the HTTP side
    server.py    `run`: bind, --lan (serve's https, token and QR code), serve
    static/      the page (plain HTML, CSS and JS; no build step, nothing remote)

FastAPI is heavy: importing this package does not load it; `create_app` and `run` do.
"""

from __future__ import annotations

__all__ = ["create_app", "run"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "run":
        from .server import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
