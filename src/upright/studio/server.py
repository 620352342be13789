"""`upright studio PROJECT`: bind, print how to reach it, serve until Ctrl+C.

Plain: 127.0.0.1 (or another loopback address), no token. --lan: exactly `upright serve
--lan`'s access (serve.tls's self-signed certificate, serve.access's token, serve.lan's
addresses, link and QR code). The studio writes to PROJECT, so it never listens beyond
loopback without the token.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..errors import UprightError
from ..serve.app import serve_until_stopped
from ..serve.defaults import DEFAULT_HOST, DEFAULT_LAN_HOST, DEFAULT_MAX_BYTES
from ..serve.lan import addresses_for, is_loopback
from ..serve.tls import certificate_for
from .defaults import DEFAULT_PORT, DEFAULT_QUOTA_GB
from ..words import count


def run(project: str | os.PathLike, host: str | None = None, port: int = DEFAULT_PORT, *, lan: bool = False,
        quota_gb: float = DEFAULT_QUOTA_GB, max_bytes: int = DEFAULT_MAX_BYTES, log_level: str = "warning",
        echo: Callable[[str], None] = print, tls_dir: str | os.PathLike | None = None) -> None:
    """Open (or create) PROJECT and serve the studio until Ctrl+C (see the module docstring)."""
    from .app import create_app

    host = host if host is not None else (DEFAULT_LAN_HOST if lan else DEFAULT_HOST)
    if not lan and not is_loopback(host):
        raise UprightError(f"upright studio writes to the project: without --lan it listens on this machine "
                           f"only (not {host!r}); for phones use --lan (https and an access token)")
    project = Path(project)
    if project.exists() and not project.is_dir():
        raise UprightError(f"{project}: exists and is not a folder")
    addresses = addresses_for(host) if lan else []
    cert = certificate_for(addresses, tls_dir) if lan else None

    def about(app) -> str:
        st = app.state.studio
        return (f"(project {project}: {count(len(st.project.classes()), 'class')}, "
                f"{count(len(st.project.photos), 'photo')})")

    serve_until_stopped(
        "studio", lambda token: create_app(project, quota=int(quota_gb * 1e9), max_bytes=max_bytes, token=token),
        host=host, port=port, addresses=addresses, cert=cert, echo=echo, log_level=log_level, about=about,
        plain=lambda port: ["Phones: restart with --lan (https, an access token and a QR code to scan)."],
        lan_words={"phones": "each phone", "server": "studio",
                   "powers": "add, move and delete photos, train and download models"})
