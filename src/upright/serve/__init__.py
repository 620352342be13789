"""The web test app behind `upright serve MODEL`: a FastAPI server plus one static page.

    from upright.serve import create_app, run
    app = create_app(upright.load_model("model"))      # any ASGI server
    run("model", host="127.0.0.1", port=8000)          # what the CLI does
"""

from __future__ import annotations

from .app import DEFAULT_MAX_BYTES, create_app, orientation_note, run

__all__ = ["DEFAULT_MAX_BYTES", "create_app", "orientation_note", "run"]
