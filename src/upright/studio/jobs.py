"""Long jobs (train, content audit, export), each a worker process (worker.py) watched by a thread.

A job's state is `running`, then `done`, `failed` or `cancelled`; its progress is the worker's
last step ("embedding" 12/40, "fitting the head", "epoch 2/3"...), and `steps` the steps so far
in the order they ran (a part of a step, "auditing the training photos: reading headers", is
not one). Every change is handed to `on_change` (the studio publishes it to the pages). Cancel sends SIGTERM (the worker unwinds
and removes what it staged), then SIGKILL after KILL_AFTER seconds. Models are trained into
PROJECT/.upright-models/<time> by `upright.train`, which builds the folder beside it and
renames it in whole: a run killed at any moment leaves no partial model (`clean_stages`
removes what such a run staged).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..atomic import dead_stages
from .names import timestamp_name

KILL_AFTER = 15.0
STDERR_LINES = 40


@dataclass
class Job:
    id: str
    kind: str
    spec: dict
    state: str = "running"
    progress: dict = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    result: dict | None = None
    error: str | None = None
    outcome: str | None = None  # the worker's last word; `state` follows once the studio has used it
    started: float = field(default_factory=time.time)
    ended: float | None = None
    model: str | None = None  # the model folder's name (train)
    proc: subprocess.Popen | None = None
    done: threading.Event = field(default_factory=threading.Event)
    stderr: deque = field(default_factory=lambda: deque(maxlen=STDERR_LINES))

    def to_dict(self, full: bool = False) -> dict:
        p = self.progress
        fraction = p["done"] / p["total"] if p.get("total") else None
        d = {"id": self.id, "kind": self.kind, "state": self.state, "error": self.error,
             "progress": {**p, "fraction": fraction} if p else {}, "steps": list(self.steps),
             "started": self.started, "ended": self.ended, "model": self.model}
        if self.kind == "train":
            d["options"] = {k: self.spec.get(k) for k in ("preset", "fine_tune", "epochs")}
        if full:
            d["result"] = self.result
        return d


def _env() -> dict:
    """The worker imports this very upright, wherever it was imported from."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class Jobs:
    def __init__(self, on_change: Callable[[Job], None]):
        self.on_change = on_change
        self.jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, kind: str, spec: dict, *, model: str | None = None,
              on_done: Callable[[Job], None] | None = None) -> Job:
        job = Job(id=f"{kind}-{next(self._ids)}-{int(time.time())}", kind=kind, spec=spec, model=model)
        # its own session: a last-resort SIGKILL reaches the worker's decode pool too (killpg)
        job.proc = subprocess.Popen([sys.executable, "-m", "upright.studio.worker", json.dumps({"kind": kind, **spec})],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=_env(), text=True, encoding="utf-8", errors="replace", start_new_session=True)
        with self._lock:
            self.jobs[job.id] = job
        threading.Thread(target=self._drain_stderr, args=(job,), daemon=True).start()
        threading.Thread(target=self._watch, args=(job, on_done), name=f"upright-job-{job.id}", daemon=True).start()
        self.on_change(job)
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def running(self, kind: str | None = None) -> list[Job]:
        return [j for j in self.jobs.values() if j.state == "running" and (kind is None or j.kind == kind)]

    def cancel(self, job: Job) -> None:
        if job.state == "running" and job.proc is not None and job.proc.poll() is None:
            job.proc.send_signal(signal.SIGTERM)
            timer = threading.Timer(KILL_AFTER, _kill_group, args=(job.proc,))
            timer.daemon = True
            timer.start()

    def shutdown(self) -> None:
        """Cancel every running job and wait for the workers to clean up."""
        for job in self.running():
            self.cancel(job)
        for job in list(self.jobs.values()):
            job.done.wait(KILL_AFTER + 5)

    def _drain_stderr(self, job: Job) -> None:
        for line in job.proc.stderr:
            if line.strip():
                job.stderr.append(line.rstrip())

    def _watch(self, job: Job, on_done) -> None:
        for line in job.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            self._apply(job, msg)
        code = job.proc.wait()
        if job.outcome is None:  # no final word: the worker died
            tail = job.stderr[-1] if job.stderr else ""
            job.outcome, job.error = "failed", f"the worker stopped (exit code {code})" + (f": {tail}" if tail else "")
        job.ended = time.time()
        if on_done is not None and job.outcome == "done":
            try:
                on_done(job)  # before the state says done: a client that sees "done" sees its effects
            except Exception as exc:  # noqa: BLE001 - one job's follow-up never stops the studio
                job.error = f"after the job: {type(exc).__name__}: {exc}"
        job.state = job.outcome
        job.done.set()
        self.on_change(job)

    def _apply(self, job: Job, msg: dict) -> None:
        if "progress" in msg:
            step = str(msg["progress"].get("step", ""))
            if not job.steps or (step != job.steps[-1] and not step.startswith(job.steps[-1] + ": ")):
                job.steps.append(step)  # "step: part" (console.within) is progress inside the last step
            job.progress = msg["progress"]
        elif "result" in msg:
            job.outcome, job.result = "done", msg["result"]
        elif "error" in msg:
            job.outcome, job.error = "failed", str(msg["error"])
        elif msg.get("cancelled"):
            job.outcome = "cancelled"
        self.on_change(job)


def _kill_group(proc: subprocess.Popen) -> None:
    """The worker did not end after SIGTERM: SIGKILL it and whatever it forked."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()


def new_model_name(models: Path) -> str:
    """A fresh folder name for a training run: its start time, never one that exists."""
    def taken(name: str) -> bool:  # a model folder, or a run's staged .<name>.* beside them
        return (models / name).exists() or (models.is_dir()
                                            and any(p.name.startswith(f".{name}.") for p in models.iterdir()))

    return timestamp_name(taken)


def clean_stages(models: Path) -> list[str]:
    """Remove the half-built model folders of runs that were killed (their process is gone)."""
    removed = []
    for p in dead_stages(models):
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p.name)
    return removed
