"""Audit, Train, Export: the live audit's JSON, the jobs (train, content audit, export), the models."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from ..presets import PRESETS
from ..serve.app import json_error
from . import models
from .jobs import Job, new_model_name
from .live_audit import view
from .state import Studio

MAX_EPOCHS = 50


class TrainBody(BaseModel):
    preset: str = "fast"
    fine_tune: bool = False
    epochs: int | None = Field(default=None, ge=1, le=MAX_EPOCHS)


def _not_ready(st: Studio) -> str | None:
    """Why training cannot start now, in words for the page (None: it can)."""
    counts = st.project.counts()
    empty = [c for c, n in counts.items() if n == 0]
    if sum(1 for n in counts.values() if n) < 2:
        return "training needs at least two classes with photos"
    if empty:
        return f"class '{empty[0]}' has no photos yet: add some, or delete the class"
    return None


def _audit_routes(app: FastAPI, st: Studio) -> None:
    @app.get("/api/audit")
    async def audit():
        result = await asyncio.get_running_loop().run_in_executor(None, st.audit.fresh)
        return result if result is not None else json_error(503, "the audit has not run yet")

    @app.get("/api/audit/view")
    async def audit_view():
        key = (st.audit.runs, id(st.content), st.project.version)  # every page asks after each run: once
        if st.view_cache[0] != key:
            shown = await asyncio.get_running_loop().run_in_executor(
                st.pool, view, st.audit.result, st.project, st.content)
            st.view_cache = (key, shown)
        shown = st.view_cache[1]
        running = st.jobs.running("audit")
        return {**shown, "running": st.audit.running, "content": {
            "done": st.content is not None, "job": running[0].to_dict() if running else None,
            "scored": len(st.sideways)}}

    @app.post("/api/audit/content", status_code=202)
    async def content_audit():
        running = st.jobs.running("audit")
        if running:
            return {"job": running[0].id}
        job = st.jobs.start("audit", {"project": str(st.project.root)}, on_done=st.content_done)
        return {"job": job.id}


def _job_routes(app: FastAPI, st: Studio) -> None:
    @app.post("/api/train", status_code=202)
    async def train(body: TrainBody):
        if body.preset not in PRESETS:
            return json_error(400, f"unknown preset '{body.preset}' ({', '.join(PRESETS)})")
        if body.epochs is not None and not body.fine_tune:
            return json_error(400, "epochs count epochs of fine-tuning: set fine_tune too, or drop epochs")
        if st.jobs.running("train"):
            return json_error(409, "a training run is already going; wait for it or cancel it")
        why = _not_ready(st)
        if why:
            return json_error(400, why)
        folder = models.models_folder(st.project)
        name = new_model_name(folder)
        spec = {"project": str(st.project.root), "out": str(folder / name), "preset": body.preset,
                "fine_tune": body.fine_tune, "epochs": body.epochs}
        job = st.jobs.start("train", spec, model=name)
        return {"job": job.id, "model": name}

    @app.get("/api/jobs")
    async def jobs():
        return {"jobs": [j.to_dict() for j in st.jobs.jobs.values()]}

    @app.get("/api/jobs/{job_id}")
    async def job(job_id: str):
        j = st.jobs.get(job_id)
        return j.to_dict(full=True) if j is not None else json_error(404, f"no job '{job_id}'")

    @app.post("/api/jobs/{job_id}/cancel", status_code=202)
    async def cancel(job_id: str):
        j = st.jobs.get(job_id)
        if j is None:
            return json_error(404, f"no job '{job_id}'")
        st.jobs.cancel(j)
        return j.to_dict()


def _model_routes(app: FastAPI, st: Studio) -> None:
    @app.get("/api/models")
    async def model_list():
        return {"models": [models.info(st.project, n) for n in models.names(st.project)]}

    @app.get("/api/models/{name}/report")
    async def report(name: str):
        folder = models.folder_of(st.project, name)
        if folder is None or not (folder / "report.html").is_file():
            return json_error(404, f"no report for model '{name}'")
        return FileResponse(folder / "report.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/models/{name}/export")
    async def export(name: str, format: str = "onnx"):
        if format not in models.EXPORTS:
            return json_error(400, f"unknown format '{format}' ({', '.join(models.EXPORTS)})")
        if models.folder_of(st.project, name) is None:
            return json_error(404, f"no model '{name}'")
        missing = models.missing_converter(format)
        if missing:
            return json_error(501, missing)
        path = models.fresh_export(st.project, name, format)
        if path is None:
            job = await asyncio.get_running_loop().run_in_executor(None, _export, st, name, format)
            if job.state != "done":
                return json_error(500, f"export failed: {job.error or job.state}")
            path = models.package(st.project, name, format)
        return FileResponse(path, media_type="application/octet-stream",
                            filename=f"{st.project.name}-{name}-{path.name}")


def _export(st: Studio, name: str, fmt: str) -> Job:
    """Run (or join) the export job of this model and format; wait for it."""
    job = next((j for j in st.jobs.running("export") if j.spec.get("key") == (name, fmt)), None)
    if job is None:
        written, _ = models.export_paths(st.project, name, fmt)
        written.parent.mkdir(parents=True, exist_ok=True)
        spec = {"model": str(models.models_folder(st.project) / name), "format": fmt, "out": str(written)}
        job = st.jobs.start("export", spec, model=name)
        job.spec["key"] = (name, fmt)
    job.done.wait()
    return job


def train_routes(app: FastAPI, st: Studio) -> None:
    _audit_routes(app, st)
    _job_routes(app, st)
    _model_routes(app, st)
