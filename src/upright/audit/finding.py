"""One audit finding, typed from the check that makes it to the JSON edge (`to_dict`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Finding:
    """One finding. `details` holds the kind-specific JSON keys (items, table, also, groups...)."""

    kind: str
    severity: str
    message: str
    attribute: str | None = None
    score: float = 0.0
    paths: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "severity": self.severity, "attribute": self.attribute,
               "score": round(float(self.score), 4), "message": self.message, "paths": list(self.paths)}
        out.update(self.details)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Finding":
        core = {"kind", "severity", "message", "attribute", "score", "paths"}
        return cls(d["kind"], d["severity"], d["message"], d.get("attribute"), float(d.get("score") or 0.0),
                   list(d.get("paths") or []), {k: v for k, v in d.items() if k not in core})
