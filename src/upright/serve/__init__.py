"""The web test app behind `upright serve MODEL`: a FastAPI server plus one static page.

    from upright.serve import create_app, run
    app = create_app(upright.load_model("model"))      # any ASGI server
    run("model", host="127.0.0.1", port=8000)          # what the CLI does

FastAPI is heavy: importing this package (or `upright.serve.defaults`, which the CLI reads)
does not load it; `create_app` and `run` load the server module on first use.

Another FastAPI app that takes uploads (the studio) reuses the same limits:

    from upright.serve.guard import guard_app        # 431 / 400 / cross-origin 403, token, CSP
    from upright.serve.app import json_errors        # every error as JSON {"error": str}
    from upright.serve.body import read_upload       # 413 / 408 / 400, in memory
    from upright.serve.budget import DecodeBudget, decode_upload  # one decode budget, shared
    from upright.serve.protocol import server_config # slow heads, lingering close, JSON errors

(`create_app(..., decode_budget=budget)` takes a DecodeBudget to share it between apps.)
"""

from __future__ import annotations

from .defaults import DEFAULT_MAX_BYTES

__all__ = ["DEFAULT_MAX_BYTES", "create_app", "run"]


def __getattr__(name: str):
    if name in ("create_app", "run"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
