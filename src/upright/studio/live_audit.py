"""The audit as photos arrive: `upright audit --metadata-only` re-run after each batch.

One background thread, started with the server (`start`); a batch marks the audit stale and
wakes it; batches that arrive while it runs are folded into the next run (so it never falls
behind, whatever the rate). The audit's decode check reads every photo through the door, so
each run first reserves, from the studio's decode budget (`gate`), what the dearest photo's
read may hold (Photo.cost): uploads decoding meanwhile and the audit never add up beyond it.
The result is exactly run_audit(PROJECT, content=False)'s JSON (GET /api/audit); `view`
turns it into what the page shows: each finding in words, with thumbnails of the photos
of the very cell it names. The content checks (duplicates by looks, sideways) run on
demand as a job (jobs.py), and their sideways scores sort the review grid.
"""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Callable

from ..audit import run_audit
from ..audit.headline import headline, named_cell
from ..errors import UprightError, one_line
from .project import Project

DEBOUNCE_SECONDS = 0.3  # photos of one burst land in one run
THUMBS_PER_FINDING = 8


class LiveAudit:
    def __init__(self, project: Project, on_change: Callable[[], None],
                 gate: Callable[[int], AbstractContextManager] = lambda nbytes: nullcontext()):
        self.project = project
        self.on_change = on_change
        self.gate = gate
        self.result: dict | None = None
        self.running = False
        self.runs = 0
        self._stale = True
        self._stop = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="upright-studio-audit", daemon=True)

    def start(self) -> None:
        """Begin auditing (once the server's event loop holds the decode budget)."""
        self._thread.start()

    def request(self) -> None:
        """The photos changed: audit again soon."""
        with self._cond:
            self._stale = True
            self._cond.notify_all()

    def fresh(self, timeout: float = 120.0) -> dict | None:
        """The result once it covers every change requested so far (or the last one after `timeout`)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._stale and not self.running, timeout)
            return self.result

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stale or self._stop)
                if self._stop:
                    return
            time.sleep(DEBOUNCE_SECONDS)
            with self._cond:
                self._stale, self.running = False, True
            result = self.result
            try:
                result = self._run()
            finally:
                with self._cond:
                    self.result, self.running = result, False
                    self.runs += 1
                    self._cond.notify_all()
            self.on_change()

    def _run(self) -> dict:
        dearest = max((p.cost for p in list(self.project.photos.values())), default=0)
        try:
            with self.gate(dearest):
                return run_audit(self.project.root, content=False, progress=False).to_dict()
        except UprightError as exc:  # no class folder yet
            return {"n_images": 0, "classes": {}, "findings": [], "unreadable": [], "note": one_line(exc)}
        except Exception as exc:  # noqa: BLE001 - the studio keeps serving; the page says why
            return {"n_images": 0, "classes": {}, "findings": [], "unreadable": [],
                    "note": f"the audit failed: {type(exc).__name__}: {one_line(exc)}"}


def view(result: dict | None, project: Project, content: dict | None = None) -> dict:
    """What the page shows of the audit: findings in words with thumbnails, most severe first."""
    if result is None:
        return {"state": "running", "findings": [], "counts": {}}
    findings = list(result.get("findings", []))
    if content:
        findings += [f for f in content.get("findings", []) if f.get("kind") in ("sideways", "duplicate")
                     and f not in findings]
    shown = []
    for f in findings:
        ids = [_photo_id(project, p) for p in (f.get("paths") or [])]
        thumbs = [project.photos[i].sha256 for i in ids if i in project.photos][:THUMBS_PER_FINDING]
        cameras = [project.photos[i].camera for i in ids[:named_cell(f)] if i in project.photos]
        shown.append({"kind": f.get("kind"), "severity": f.get("severity"), "attribute": f.get("attribute"),
                      "class": f.get("class"), "value": f.get("value"), "headline": headline(f, cameras),
                      "message": f.get("message"), "n_photos": len(ids), "thumbs": thumbs,
                      "also": f.get("also") or []})
    return {"state": "done", "n_images": result.get("n_images", 0), "findings": shown,
            "counts": result.get("counts", {}), "seconds": result.get("seconds"), "note": result.get("note"),
            "unreadable": [{"id": _photo_id(project, u["path"]), "reason": u["reason"]}
                           for u in result.get("unreadable", [])]}


def _photo_id(project: Project, path: str) -> str:
    try:
        return Path(path).resolve().relative_to(project.root).as_posix()
    except ValueError:
        return path
