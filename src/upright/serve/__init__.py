"""The web test app behind `upright serve MODEL`: a FastAPI server plus one static page.

    from upright.serve import create_app, run
    app = create_app(upright.load_model("model"))      # any ASGI server
    run("model", host="127.0.0.1", port=8000)          # what the CLI does

FastAPI is heavy: importing this package (or `upright.serve.defaults`, which the CLI reads)
does not load it; `create_app` and `run` load the server module on first use.
"""

from __future__ import annotations

from .defaults import DEFAULT_MAX_BYTES

__all__ = ["DEFAULT_MAX_BYTES", "create_app", "run"]


def __getattr__(name: str):
    if name in ("create_app", "run"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
