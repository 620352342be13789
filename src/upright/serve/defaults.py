"""The server's defaults, shared by `upright serve`'s options and `create_app`/`run`.

Importable without FastAPI, so the CLI can show them in --help without loading the server.
"""

from ..cost import DEFAULT_BUDGET

DEFAULT_HOST = "127.0.0.1"  # this machine only; 0.0.0.0 exposes the app to every network
DEFAULT_PORT = 8000
DEFAULT_MAX_BYTES = 25_000_000  # largest upload accepted (413 beyond)
#: Most queued uploads the model runs in one call (bench/serve.py, 2 cores, 16 clients:
#: 60 req/s with 4 vs 50 unbatched).
DEFAULT_MAX_BATCH = 4
#: Bytes of decode memory every upload decoding at once may hold together (budget.py): one
#: file's own bound, so N concurrent uploads cost what one may.
DEFAULT_DECODE_BUDGET = DEFAULT_BUDGET
DEFAULT_LAN_HOST = "0.0.0.0"  # `serve --lan` without --host: every IPv4 interface (https + token)

# Limits that keep one client from holding the server (408 when a client is too slow).
HEADER_TIMEOUT = 10.0  # seconds for a request's head (request line + headers), from its first byte
BODY_IDLE_TIMEOUT = 15.0  # seconds the body may pause
BODY_TIMEOUT = 120.0  # seconds for the whole body (25 MB at 210 KB/s; a 5 MB photo at 42 KB/s)
MIN_BODY_RATE = 1000  # bytes/s the body must average once it has taken BODY_IDLE_TIMEOUT seconds
LINGER_SECONDS = 2.0  # after answering an unread body (413, 408): discard input this long, then close
MAX_HEAD_BYTES = 16 * 1024  # request line + headers
