"""`run_audit`'s typed result: fields in the JSON's order, `to_dict()` the contracts' audit JSON.

Findings stay `Finding` objects here (`result.findings`); they become dicts at the JSON edge
(`to_dict()`), and reading the result like the dict (`result["findings"]`, as scripts written
against the JSON do) gives the JSON's values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..results import Result, _plain
from .finding import Finding

#: keys in the JSON only when they apply (absent otherwise, as before the result was typed)
_ONLY_WHEN_SET = ("cache_hits", "report")


@dataclass
class AuditResult(Result):
    """`upright audit`: what was found, what was checked and what it cost."""

    n_images: int
    classes: dict[str, int]  # readable files per class (every class folder)
    unreadable: list[dict]  # [{"path", "reason"}]
    findings: list[Finding]  # most severe first, then by score
    data: str
    n_readable: int
    splits: dict[str, int]  # readable files per split
    skipped: list[dict]  # [{"path", "reason"}]: not images, hidden, links...
    checks: dict[str, Optional[str]]  # check -> what was done (None: not run)
    checks_run: list[str]
    checks_not_run: dict[str, str]  # check -> why
    attributes: dict = field(default_factory=dict)  # label_leak's value x class tables
    sideways: Optional[dict] = None  # the rotation head's figures
    info: dict = field(default_factory=dict, metadata={"json": False})  # other checks' extra top-level keys
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    content: bool = False  # the content checks' embeddings were prepared
    counts: dict[str, int] = field(default_factory=dict)  # findings per severity
    cache_hits: Optional[int] = None  # with an embedding pass: files served from the cache
    report: Optional[str] = None  # `--report FILE` (set by the CLI)

    def json_keys(self) -> list[str]:
        keys = super().json_keys()
        keys = [k for k in keys if k not in _ONLY_WHEN_SET or getattr(self, k) is not None]
        at = keys.index("seconds")
        return keys[:at] + [k for k in self.info if k not in keys] + keys[at:]

    def _value(self, key: str) -> Any:
        if key == "findings":
            return self._findings_json()
        if key in self.info and not hasattr(self, key):
            return self.info[key]
        return getattr(self, key)

    def _findings_json(self) -> list[dict]:
        """The findings as JSON dicts, made once while `findings` holds the same ones: every
        reader sees the same dicts (the demo tells its main finding from the others by identity)."""
        key = tuple(map(id, self.findings))
        if self.__dict__.get("_findings_key") != key:
            self._findings_key, self._findings_dicts = key, [f.to_dict() for f in self.findings]
        return self._findings_dicts

    def to_dict(self) -> dict:
        return {k: _plain(self._value(k)) for k in self.json_keys()}

    def __getitem__(self, key: str) -> Any:
        if key not in self.json_keys():
            raise KeyError(key)
        return self._value(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self._value(key) if key in self.json_keys() else default
