"""What every benchmark prints about the machine it ran on (not a benchmark itself)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine(*dists: str) -> str:
    """One line: CPU, cores, load, Python and the given distributions' versions."""
    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    versions = "".join(f", {d} {version(d)}" for d in dists)
    return f"{cpu_model()}, {os.cpu_count()} cores{load}, Python {platform.python_version()}{versions}"
