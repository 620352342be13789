"""How bad a finding is: "error", "warning" or "info", in that order."""

from __future__ import annotations

#: Severities, most severe first.
SEVERITIES = ("error", "warning", "info")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}  # 0 = most severe
#: Terminal colour of each severity (Rich style names).
SEVERITY_COLOUR = {"error": "red", "warning": "yellow", "info": "blue"}


def rank(severity: str | None) -> int:
    """Sort key: 0 for "error", ..., len(SEVERITIES) for anything unknown (least severe)."""
    return SEVERITY_RANK.get(severity, len(SEVERITIES)) if severity else len(SEVERITIES)


def worst_severity(result: dict) -> str | None:
    """The most severe finding's severity in an audit result, or None without findings."""
    found = [f["severity"] for f in result["findings"]]
    return min(found, key=rank) if found else None


def fails(result: dict, fail_on: str | None) -> bool:
    """`--fail-on`: True when any finding is as severe as `fail_on` or worse."""
    if not fail_on:
        return False
    limit = SEVERITY_RANK[fail_on]
    return any(rank(f["severity"]) <= limit for f in result["findings"])
