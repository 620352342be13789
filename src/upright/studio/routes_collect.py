"""Collect and Review: the project, classes, uploads, thumbnails, moves, turns and the trash."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from ..errors import UprightError, one_line
from ..fix import BACKUP_DIR, fix_one_in_place, undo_fix
from ..serve.app import json_error
from ..serve.budget import Burst, decode_upload
from . import classes, trash
from .names import BadName
from .state import Studio
from .store import Refused, check_upload, known, marked, store
from .thumbs import THUMB_SHORT, make_thumbs, thumb_to_make
from .uploads import UploadError, read_files


class NameBody(BaseModel):
    name: str = Field(max_length=1000)


class PhotosBody(BaseModel):
    photos: list[str] = Field(min_length=1, max_length=1000)
    to: str | None = None


class PhotoBody(BaseModel):
    photo: str


class TurnBody(PhotoBody):
    degrees: int = 90  # clockwise; 0 only stores upright what the orientation tag says


async def _take(st: Studio, label: str, data: bytes, captured: bool) -> dict:
    """Check and store one upload: {"stored"|"duplicate": id} or {"refused": reason}. The
    decode waits for the studio's decode budget (shared with the Test tab's apps)."""
    try:
        data = marked(data, captured)
        sha, dup = await known(st.project, data, st.pool)
        if dup is not None:
            return {"duplicate": dup}
        checked = await check_upload(data, budget=st.budget, pool=st.pool, sha256=sha)
        return await asyncio.get_running_loop().run_in_executor(st.pool, store, st.project, label, checked, st.quota)
    except Refused as exc:
        return {"refused": exc.reason}


async def _change(st: Studio, fn, *args, missing: str = "unknown", then=None):
    """Run a change of the project in the pool, tell the pages, and answer its errors in words:
    404 for an unknown class, photo or trash item, 400 a bad name, 409 a name taken.
    `then(result)`: awaited before the pages hear of the change (thumbnails of new bytes)."""
    try:
        result = await asyncio.get_running_loop().run_in_executor(st.pool, fn, *args)
    except KeyError as exc:
        return json_error(404, f"{missing}: {exc.args[0] if exc.args else ''}")
    except BadName as exc:
        return json_error(400, str(exc))
    except UprightError as exc:  # classes.Conflict is one
        return json_error(409, one_line(exc))
    if then is not None:
        await then(result)
    st.changed()
    return result


def _class_routes(app: FastAPI, st: Studio) -> None:
    @app.post("/api/classes", status_code=201)
    async def create_class(body: NameBody):
        name = await _change(st, classes.create, st.project, body.name)
        return {"name": name} if isinstance(name, str) else name

    @app.patch("/api/classes/{name}")
    async def rename_class(name: str, body: NameBody):
        new = await _change(st, classes.rename, st.project, name, body.name, missing="no class")
        return {"name": new} if isinstance(new, str) else new

    @app.delete("/api/classes/{name}")
    async def delete_class(name: str):
        about = await _change(st, trash.trash_class, st.project, name, missing="no class")
        return {"trashed": about} if isinstance(about, dict) else about

    @app.get("/api/classes/{name}/photos")
    async def list_photos(name: str):
        if name not in st.project.classes():
            return json_error(404, f"no class '{name}'")
        return {"class": name, "photos": st.photos_json(name)}


def _upload_routes(app: FastAPI, st: Studio) -> None:
    burst = Burst(st.pool)  # when the last upload in flight ends, the freed heap goes back to the OS

    @app.post("/api/classes/{name}/photos")
    async def upload(name: str, request: Request):
        if name not in st.project.classes():
            return json_error(404, f"no class '{name}'")
        async with burst.request():
            try:
                return await _upload(st, name, request)
            except UploadError as exc:
                return json_error(exc.status, exc.message)


async def _upload(st: Studio, name: str, request: Request) -> dict:
    files, fields = await read_files(request, st.max_bytes)
    captured = fields.get("source") == "camera"
    out: dict = {"class": name, "source": "camera" if captured else "upload",
                 "stored": [], "duplicates": [], "refused": []}
    try:
        for filename, data in files:
            got = await _take(st, name, data, captured)
            shown = filename or ("camera" if captured else "upload")
            if "stored" in got:
                out["stored"].append({"name": shown, "id": got["stored"]})
            elif "duplicate" in got:
                out["duplicates"].append({"name": shown, "of": got["duplicate"]})
            else:
                out["refused"].append({"name": shown, "reason": got["refused"]})
    finally:
        del files
        if out["stored"]:
            st.changed()
    return out


def _photo_routes(app: FastAPI, st: Studio) -> None:
    @app.post("/api/photos/move")
    async def move(body: PhotosBody):
        return await _change(st, classes.move, st.project, body.photos, body.to or "", missing="unknown photo or class")

    @app.post("/api/photos/trash")
    async def trash_photos(body: PhotosBody):
        about = await _change(st, trash.trash_photos, st.project, body.photos, missing="unknown photo")
        return {"trashed": about} if isinstance(about, dict) else about

    @app.post("/api/photos/turn")
    async def turn(body: TurnBody):
        if body.degrees not in (0, 90, 180, 270):
            return json_error(400, "degrees must be 0, 90, 180 or 270 (clockwise)")
        photo = st.project.photo(body.photo)
        if photo is None:
            return json_error(404, f"unknown photo: {body.photo}")
        res = await _change(st, _turn, st, photo.id, body.degrees, then=lambda r: _new_bytes(st, [r["photo"]]))
        if isinstance(res, dict) and res.get("outcome") == "failed":
            return json_error(422, f"cannot turn {photo.id}: {res.get('note')}")
        return res

    @app.post("/api/photos/undo-turn")
    async def undo_turn(body: PhotoBody):
        if st.project.photo(body.photo) is None:
            return json_error(404, f"unknown photo: {body.photo}")
        res = await _change(st, _undo, st, [body.photo], then=lambda r: _new_bytes(st, r["restored"]))
        if isinstance(res, dict) and not res["restored"]:
            return json_error(409, f"cannot undo the turn of {body.photo}: {res['conflicts'][0]['reason']}")
        return res

    @app.post("/api/photos/undo-turns")
    async def undo_turns():
        return await _change(st, _undo, st, None, then=lambda r: _new_bytes(st, r["restored"]))


def _turn(st: Studio, pid: str, degrees: int) -> dict:
    """`fix --in-place` on one photo, turning it `degrees` clockwise; the way back: `_undo`."""
    with st.project.lock:
        r = fix_one_in_place(st.project.root, st.project.root / pid, (360 - degrees) % 360)
        st.project.refresh()
    return {"photo": pid, "outcome": r.action, "method": r.method, "note": r.note, "degrees": degrees}


def _undo(st: Studio, ids: list[str] | None) -> dict:
    """`fix --undo` on these photos (None: every turned photo of PROJECT): originals back where
    the photos are now; the others keep their way back."""
    with st.project.lock:
        if ids is not None and not (st.project.root / BACKUP_DIR).is_dir():
            r = {"restored": [], "kept": [], "conflicts": [{"path": i, "reason": "never turned: nothing to undo"}
                                                          for i in ids]}
        else:
            r = undo_fix(st.project.root, paths=ids)
        st.project.refresh()
    return {"restored": [Path(p).as_posix() for p in r["restored"]], "conflicts": r["conflicts"],
            "kept": r["kept"]}


async def _thumb(st: Studio, sha256: str, source, view: str):
    """The cached thumbnail, made on first use through the decode budget (None: cannot be shown)."""
    folder = st.project.cache_dir("thumbs")
    path, make = thumb_to_make(folder, sha256, view)
    if make:
        try:
            await decode_upload(source, THUMB_SHORT, budget=st.budget, pool=st.pool,
                                decode=lambda src: make_thumbs(folder, sha256, src))
        except Exception:  # noqa: BLE001 - a photo that cannot be shown is not a server error
            return None
    return path if path.is_file() else None


async def _new_bytes(st: Studio, ids: list[str]) -> None:
    """Thumbnails of photos whose bytes a turn or an undo just changed (a new content hash),
    made before the pages hear of it: every page's <img> for the new hash loads at once."""
    for pid in ids:
        photo = st.project.photo(pid)  # None: restored in the trash, not shown
        if photo is not None:
            await _thumb(st, photo.sha256, st.project.root / photo.id, "upright")


def _media_routes(app: FastAPI, st: Studio) -> None:
    @app.get("/api/thumbs/{sha256}")
    async def thumb(sha256: str, view: str = "upright"):
        pid = st.project.duplicate_of(sha256) if len(sha256) == 64 else None
        photo = st.project.photo(pid) if pid else None
        if photo is None or photo.sha256 != sha256 or view not in ("upright", "stored"):
            return json_error(404, "no such photo")
        path = await _thumb(st, sha256, st.project.root / photo.id, view)
        if path is None:
            return json_error(404, "no such view" if view == "stored" else "this photo cannot be shown")
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=31536000"})

    @app.get("/api/trash")
    async def list_trash():
        return {"items": trash.items(st.project)}

    @app.post("/api/trash/{item}/restore")
    async def restore(item: str):
        return await _change(st, trash.restore, st.project, item, missing="no trash item")

    @app.get("/api/project")
    async def project():
        if await asyncio.get_running_loop().run_in_executor(st.pool, st.project.refresh):
            st.changed()
        return st.project_json()


def collect_routes(app: FastAPI, st: Studio) -> None:
    _class_routes(app, st)
    _upload_routes(app, st)
    _photo_routes(app, st)
    _media_routes(app, st)
