"""The project's models (PROJECT/.upright-models/<time>/), the Test tab's app, and the exports.

Test: `upright serve`'s own app (serve.app.create_app: upload, live camera, turn test, the
same upload bounds and decoding, the studio's one decode budget) is made for the chosen model on first use and kept for the
next requests (the two last used). The studio hands it POST /api/predict and GET /api/model;
which model: `?model=NAME`, else the page's cookie `upright_model`, else the newest.

Export: the worker process writes each format once per model into
PROJECT/.upright-studio/exports/<model>/ (ONNX with the preprocessing in the graph; TFLite
with its labels file, and Core ML's package folder, zipped for the download).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import zipfile
from collections import OrderedDict
from contextlib import AsyncExitStack
from pathlib import Path

from ..atomic import atomic_path
from ..errors import UprightError
from ..modelfile import META_FILE
from .project import MODELS_DIR, Project

KEEP_APPS = 2
#: model.json "training" keys the model card shows beside val_accuracy (train_report.card_figures;
#: null for a model trained before they were written)
CARD = ("per_class", "n_mistakes", "audit_warnings", "val_photos")
COOKIE = "upright_model"
#: format -> (file the exporter writes, file downloaded, the module its converter needs)
EXPORTS = {"onnx": ("model-pixels.onnx", "model-pixels.onnx", None),
           "tflite": ("model.tflite", "model-tflite.zip", "litert_torch"),
           "coreml": ("model.mlpackage", "model-coreml.zip", "coremltools")}
MISSING = {"tflite": "TFLite export needs litert-torch, which is not installed here: pip install "
                     "'upright[tflite]' (docs/deploy.md: 'Deploy the model as it is'), then restart the studio",
           "coreml": "Core ML export needs coremltools, which is not installed here: pip install "
                     "'upright[coreml]', then restart the studio"}


def models_folder(project: Project) -> Path:
    return project.root / MODELS_DIR


def names(project: Project) -> list[str]:
    """Model folder names, newest first (names are start times)."""
    folder = models_folder(project)
    if not folder.is_dir():
        return []
    return sorted((p.name for p in folder.iterdir() if not p.name.startswith(".") and (p / META_FILE).is_file()),
                  reverse=True)


def folder_of(project: Project, name: str) -> Path | None:
    return models_folder(project) / name if name in names(project) else None


def info(project: Project, name: str) -> dict:
    """The figures the page shows of a model, from its model.json (the display only: loading
    the model for predictions goes through upright.load_model's checks)."""
    try:
        meta = json.loads((models_folder(project) / name / META_FILE).read_text(encoding="utf-8"))
        training = meta.get("training") or {}
        return {"name": name, "labels": meta.get("labels"), "val_accuracy": training.get("val_accuracy"),
                "n_train": training.get("n_train"), "n_val": training.get("n_val"),
                "classes": training.get("classes"), "seconds": training.get("seconds"),
                "preset": meta.get("preset", "fast"), "backbone": meta.get("backbone"),
                "fine_tuned": bool(meta.get("fine_tuned")),
                "report": (models_folder(project) / name / "report.html").is_file(),
                **{k: training.get(k) for k in CARD}}
    except (OSError, ValueError, AttributeError) as exc:
        return {"name": name, "error": f"unreadable model.json: {exc}"}


def chosen(project: Project, query: dict, cookies: dict) -> str | None:
    """The model a Test request is for: ?model=, else the cookie, else the newest (None: no model)."""
    have = names(project)
    for wish in (query.get("model"), cookies.get(COOKIE)):
        if wish in have:
            return wish
    return have[0] if have else None


class TestApps:
    """serve's app per model, loaded on first use (in a thread: it takes seconds), or ahead of
    it (`preload`: the newest model when the studio starts and after each training run), so
    its model is warm before the Test tab's first photo (serve's warm-up)."""

    def __init__(self, project: Project, max_bytes: int, budget):
        self.project, self.max_bytes, self.budget = project, max_bytes, budget
        self._apps: OrderedDict[str, tuple] = OrderedDict()
        self._lock = asyncio.Lock()
        self._preloads: set[asyncio.Task] = set()

    def preload(self, name: str) -> None:
        """Load `name`'s app in the background (call in the event loop); a model that cannot be
        loaded is said when the Test tab asks for it."""
        async def load():
            try:
                await self.app_for(name)
            except UprightError:
                pass

        task = asyncio.ensure_future(load())
        self._preloads.add(task)
        task.add_done_callback(self._preloads.discard)

    def ready(self, name: str) -> bool:
        """Whether `name`'s app is loaded and its model warm (serve's /healthz "ready")."""
        from ..serve.app import is_ready

        return name in self._apps and is_ready(self._apps[name][0])

    async def app_for(self, name: str):
        async with self._lock:
            if name in self._apps:
                self._apps.move_to_end(name)
                return self._apps[name][0]
            app, stack = await self._load(name)
            self._apps[name] = (app, stack)
            while len(self._apps) > KEEP_APPS:
                _, (_, old) = self._apps.popitem(last=False)
                await old.aclose()
            return app

    async def _load(self, name: str):
        from ..model import load_model
        from ..serve.app import create_app

        folder = models_folder(self.project) / name
        model = await asyncio.get_running_loop().run_in_executor(None, load_model, folder)
        app = create_app(model, max_bytes=self.max_bytes, model_name=name, decode_budget=self.budget)
        stack = AsyncExitStack()
        await stack.enter_async_context(app.router.lifespan_context(app))  # its batcher and decode pool
        return app, stack

    async def close(self) -> None:
        for task in list(self._preloads):
            task.cancel()
        while self._apps:
            _, (_, stack) = self._apps.popitem()
            await stack.aclose()


def missing_converter(fmt: str) -> str | None:
    """Why `fmt` cannot be exported in this environment, or None."""
    module = EXPORTS[fmt][2]
    if module and importlib.util.find_spec(module) is None:
        return MISSING[fmt]
    return None


def export_paths(project: Project, name: str, fmt: str) -> tuple[Path, Path]:
    """(what the exporter writes, what is downloaded) for a model and format."""
    folder = project.cache_dir("exports", name)
    written, download, _ = EXPORTS[fmt]
    return folder / written, folder / download


def fresh_export(project: Project, name: str, fmt: str) -> Path | None:
    """The download, when it exists and is newer than the model."""
    _, download = export_paths(project, name, fmt)
    meta = models_folder(project) / name / META_FILE
    if download.exists() and download.stat().st_mtime >= meta.stat().st_mtime:
        return download
    return None


def package(project: Project, name: str, fmt: str) -> Path:
    """Zip what the exporter wrote when the format is more than one file (atomically)."""
    written, download = export_paths(project, name, fmt)
    if written == download:
        return download
    files = [written] if written.is_file() else sorted(p for p in written.rglob("*") if p.is_file())
    if fmt == "tflite":
        files.append(written.with_name(written.stem + ".labels.txt"))
    with atomic_path(download) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for f in files:
                z.write(f, f.relative_to(written.parent).as_posix())
    return download
