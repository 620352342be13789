"""The server's defaults, shared by `upright serve`'s options and `create_app`/`run`.

Importable without FastAPI, so the CLI can show them in --help without loading the server.
"""

DEFAULT_HOST = "127.0.0.1"  # this machine only; 0.0.0.0 exposes the app to every network
DEFAULT_PORT = 8000
DEFAULT_MAX_BYTES = 25_000_000  # largest upload accepted (413 beyond)
#: Most queued uploads the model runs in one call (bench/serve.py, 2 cores, 16 clients:
#: 60 req/s with 4 vs 50 unbatched).
DEFAULT_MAX_BATCH = 4
DEFAULT_LAN_HOST = "0.0.0.0"  # `serve --lan` without --host: every IPv4 interface (https + token)
