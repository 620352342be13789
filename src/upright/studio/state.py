"""What one running studio holds: the project, its live audit, jobs, the Test apps, the events,
and the words of GET /api/project (the page's picture of the project)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_write_text, clean_leftovers
from ..fix import fixed_paths
from ..serve.budget import DecodeBudget
from ..serve.defaults import DEFAULT_DECODE_BUDGET
from . import models, trash
from .events import Events
from .jobs import Job, Jobs, clean_stages
from .live_audit import LiveAudit
from .project import Project

RECENT = 8  # thumbnails per class on the Collect page
SIDEWAYS_FILE = "sideways.json"


@dataclass
class Studio:
    project: Project
    quota: int
    max_bytes: int
    lan: bool = False
    #: every decode of an upload (the studio's checks and thumbnails, the Test tab's apps)
    #: waits for room in this one budget: N phones cost what one file may
    budget: DecodeBudget = field(default_factory=lambda: DecodeBudget(DEFAULT_DECODE_BUDGET))
    events: Events = field(default_factory=Events)
    content: dict | None = None  # the last content audit (every check)
    sideways: dict[str, dict] = field(default_factory=dict)  # sha256 -> {"confidence", "rotation"}
    view_cache: tuple = (None, None)  # ((audit run, content, project version), GET /api/audit/view)
    jobs: Jobs = field(init=False)
    audit: LiveAudit = field(init=False)
    tests: models.TestApps = field(init=False)
    pool: concurrent.futures.ThreadPoolExecutor = field(init=False)
    loop: asyncio.AbstractEventLoop | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.jobs = Jobs(self._job_changed)
        self.audit = LiveAudit(self.project, lambda: self.events.publish("audit", {"runs": self.audit.runs}),
                               gate=self._audit_gate)
        self.tests = models.TestApps(self.project, self.max_bytes, self.budget)
        # checks, thumbnails, changes of the project: two threads, whatever the number of phones
        self.pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="upright-studio")
        self.sideways = self._load_sideways()

    @classmethod
    def open(cls, root: str | os.PathLike, **options) -> "Studio":
        """The studio for PROJECT, after removing what killed runs left: temp files of atomic
        writes (photos, thumbnails) and half-built model folders."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        clean_leftovers(root, recursive=True)
        clean_stages(root / models.MODELS_DIR)
        return cls(Project(root), **options)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """The server runs: events go through its loop, and the live audit begins."""
        self.loop = loop
        self.events.bind(loop)
        self.audit.start()
        self.changed()
        newest = models.names(self.project)
        if newest:
            self.tests.preload(newest[0])  # the Test tab's model, warm before its first photo

    def _audit_gate(self, nbytes: int):
        """The live audit's share of the decode budget, held from its own thread."""
        return self.budget.hold_in_thread(nbytes, self.loop)

    def changed(self, audit: bool = True) -> None:
        """Photos or classes changed: tell every page, and audit again."""
        if audit:
            self.audit.request()
        self.events.publish("project", {"version": self.project.version})

    def _job_changed(self, job: Job) -> None:
        self.events.publish("job", job.to_dict())
        if job.state == "done" and job.kind == "train":
            self.events.publish("project", {"version": self.project.version})  # a new model
            if self.loop is not None and job.model:
                try:
                    self.loop.call_soon_threadsafe(self.tests.preload, job.model)  # the Test tab's, warm
                except RuntimeError:  # the studio is stopping
                    pass

    def health(self) -> dict:
        """GET /healthz: "ready" once the Test tab's model (the newest) is loaded and warm."""
        newest = models.names(self.project)
        test = {"name": newest[0], "ready": self.tests.ready(newest[0])} if newest else None
        return {"status": "ok", "project": self.project.name, "photos": len(self.project.photos),
                "ready": test is None or test["ready"], "test_model": test}

    def close(self) -> None:
        self.jobs.shutdown()
        self.audit.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- the content audit's sideways scores (kept across restarts, by content hash) -------
    def _load_sideways(self) -> dict:
        try:
            data = json.loads(self.project.cache_dir(SIDEWAYS_FILE).read_text(encoding="utf-8"))
            return {k: v for k, v in data.items() if isinstance(v, dict)}
        except (OSError, ValueError, AttributeError):
            return {}

    def content_done(self, job: Job) -> None:
        if not job.result:
            return
        self.content = job.result.get("audit")
        by_path = {str(self.project.root / p.id): p.sha256 for p in self.project.photos.values()}
        scores = {by_path[it["path"]]: {"confidence": it["confidence"], "rotation": it["rotation"]}
                  for it in job.result.get("sideways", []) if it.get("path") in by_path}
        self.sideways = scores
        atomic_write_text(self.project.cache_dir(SIDEWAYS_FILE), json.dumps(scores))
        self.events.publish("audit", {"content": True})

    # -- GET /api/project ---------------------------------------------------------------------
    def project_json(self) -> dict:
        p = self.project
        classes = []
        for label in p.classes():
            members = p.members(label)
            classes.append({"name": label, "count": len(members), "recent": [m.sha256 for m in members[:RECENT]],
                            "captured": sum(m.captured for m in members),
                            "tagged": sum(1 for m in members if m.orientation != 1)})
        return {
            "project": p.name, "version": p.version,
            "layout": "split" if p.folders()[0][0] is not None else "classes",
            "classes": classes, "models": [models.info(p, n) for n in models.names(p)],
            "trash": len(trash.items(p)), "quota": {"used": p.bytes_used(), "limit": self.quota},
            "max_bytes": self.max_bytes, "lan": self.lan,
            "jobs": [j.to_dict() for j in self.jobs.jobs.values()][-10:],
            "converters": {fmt: models.missing_converter(fmt) for fmt in models.EXPORTS},
        }

    def photos_json(self, label: str) -> list[dict]:
        turned = fixed_paths(self.project.root)
        out = []
        for m in self.project.members(label):
            d = m.to_dict()
            d["sideways"] = self.sideways.get(m.sha256)
            d["turned"] = m.id in turned  # a turn through fix with its way back (undo-turn)
            out.append(d)
        return out
