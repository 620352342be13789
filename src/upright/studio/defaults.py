"""`upright studio`'s defaults (the CLI shows them in --help without loading the server)."""

DEFAULT_PORT = 8000
DEFAULT_QUOTA_GB = 4.0  # photos + trash a project may hold; uploads past it are refused (507)
