"""`python -m upright.studio.worker SPEC`: one long job (train, content audit, export) in its own
process, so the studio keeps serving, a cancel is a signal, and the memory goes when it ends.

SPEC is JSON {"kind": "train"|"audit"|"export", ...}. The job talks on its original stdout,
one JSON object a line: {"progress": {"step", "done", "total"}} (from console.listening, at
most PROGRESS_HZ a second per step), then {"result": ...}, {"error": "one line"} or
{"cancelled": true}; anything else the libraries print goes to stderr. SIGTERM cancels (the
exception unwinds through train's staged folder, which is removed: no partial model);
the end of stdin (the studio is gone, even killed with SIGKILL) does too.

For tests: with HOLD_ENV set to "1" in its environment, a worker stops right after its first
progress line and waits there until it is cancelled, so a test cancels (or kills the studio
during) a job that is certainly running, however fast the machine.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Callable

PROGRESS_HZ = 5.0
HOLD_ENV = "UPRIGHT_STUDIO_WORKER_HOLD"
GRACE_SECONDS = 20.0  # after the studio is gone: time to clean up before the process ends anyway


class Cancelled(BaseException):
    """Raised in the main thread by SIGTERM or a vanished studio."""


def _run_train(spec: dict) -> dict:
    from ..train import train_dataset

    r = train_dataset(spec["project"], spec["out"], preset=spec.get("preset", "fast"),
                      fine_tune=bool(spec.get("fine_tune")), epochs=spec.get("epochs"), progress=False)
    return r.to_dict()


def _run_audit(spec: dict) -> dict:
    """The content audit (every check) and the sideways score of every photo (threshold 0)."""
    from ..audit import run_audit

    result = run_audit(spec["project"], progress=False).to_dict()
    scores = run_audit(spec["project"], progress=False, checks=["sideways"], sideways_threshold=0.0)
    items = [it for f in scores.findings if f.kind == "sideways" for it in f.details.get("items", [])]
    return {"audit": result, "sideways": items}


def _run_export(spec: dict) -> dict:
    from ..export import run_export

    out = run_export(spec["model"], spec["format"], spec["out"], preprocess=spec["format"] == "onnx")
    return {"file": str(out)}


RUNNERS: dict[str, Callable[[dict], dict]] = {"train": _run_train, "audit": _run_audit, "export": _run_export}


def _reporter(say: Callable[..., None], hold: bool = False) -> Callable[[str, int, int], None]:
    last: dict[str, float] = {}

    def report(description: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done in (0, total) or now - last.get(description, 0.0) >= 1 / PROGRESS_HZ:
            last[description] = now
            say(progress={"step": description, "done": done, "total": total})
            if hold and threading.current_thread() is threading.main_thread():
                threading.Event().wait()  # HOLD_ENV: until SIGTERM's Cancelled interrupts the wait

    return report


def _cancel_on_signal(proto_fd: int) -> None:
    """SIGTERM cancels. Processes forked from here (the embedding's decode pool) get neither the
    handler nor the protocol's pipe: pool.terminate() ends them, and the studio sees the pipe
    close when this process ends, not when the last of them does."""
    def handler(signum, frame):
        raise Cancelled()

    def in_child() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            os.close(proto_fd)
        except OSError:
            pass

    signal.signal(signal.SIGTERM, handler)
    os.register_at_fork(after_in_child=in_child)


def _end_children() -> None:
    """Kill what this process forked (the decode pool) so nothing outlives it. The studio starts
    each worker as the leader of its own process group: then the whole group goes, this process
    last, which also reaches a pool process forked at the very moment of the cancel (one the pool
    never got to count); run by hand, only the children multiprocessing knows of."""
    import multiprocessing

    for child in multiprocessing.active_children():
        child.kill()
    if os.getpgrp() == os.getpid():
        sys.stdout.flush()
        os.killpg(os.getpid(), signal.SIGKILL)


def _cancel_when_orphaned() -> None:
    """The studio holds our stdin open; its end means the studio is gone: cancel, then exit."""
    def watch() -> None:
        # os.read, not sys.stdin: a thread blocked in the buffered reader holds its lock, and a
        # process forked meanwhile (the decode pool; multiprocessing closes stdin) would deadlock
        while os.read(0, 1024):
            pass
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(GRACE_SECONDS)
        _end_children()
        os._exit(130)

    threading.Thread(target=watch, name="upright-worker-orphan", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    from ..console import listening
    from ..errors import UprightError, one_line

    spec = json.loads((argv or sys.argv[1:])[0])
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # whatever else prints goes to stderr, never into the protocol
    lock = threading.RLock()  # a cancel may land inside say(), which then says "cancelled"

    def say(**message) -> None:
        with lock:
            try:
                proto.write(json.dumps(message) + "\n")
                proto.flush()
            except (OSError, ValueError):  # the studio is gone: nobody to tell
                pass

    _cancel_on_signal(proto.fileno())
    _cancel_when_orphaned()
    try:
        with listening(_reporter(say, hold=os.environ.get(HOLD_ENV) == "1")):
            result = RUNNERS[spec["kind"]](spec)
    except (Cancelled, KeyboardInterrupt):
        try:
            say(cancelled=True)
        finally:
            _end_children()
        return 130
    except UprightError as exc:
        say(error=one_line(exc, 500))
        return 1
    except Exception as exc:  # noqa: BLE001 - the studio shows it in one line
        say(error=f"{type(exc).__name__}: {one_line(exc, 400)}")
        return 1
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # done: the result is the last word
    say(result=result)
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a subprocess by jobs.py
    sys.exit(main())
