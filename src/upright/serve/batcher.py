"""The model's one worker thread: uploads that queue up while it is busy run as one batch.

`create_app` hands every decoded upload to a Batcher; its future resolves to the upload's
predictions. Nothing here knows HTTP.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from .defaults import DEFAULT_MAX_BATCH


@dataclass
class _Job:
    images: list[Image.Image]  # one upload, or the four views of a turn test (one job, one call)
    top_k: int
    single: bool = True  # the future gets one image's predictions (else a list, one per image)
    warm: bool = False  # not an upload: the model's warm-up (Batcher.warm)
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class Batcher:
    """One worker thread owns the model. Jobs that queue up while it is busy run together
    in one `predict_images` call (up to max_batch), so load raises throughput instead of
    latency, and the event loop never waits on a lock."""

    def __init__(self, model: Any, max_batch: int = DEFAULT_MAX_BATCH):
        self.model = model
        self.max_batch = max(1, int(max_batch))
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="upright-batcher", daemon=True)
        self._closed = False
        self.batches = 0
        self.images = 0
        self.largest_batch = 0
        self.busy = False
        self._thread.start()

    def submit(self, image: Image.Image, top_k: int) -> concurrent.futures.Future:
        """Future of (predictions, images in the model call, model ms)."""
        return self._put(_Job([image], top_k))

    def submit_many(self, images: list[Image.Image], top_k: int) -> concurrent.futures.Future:
        """Future of ([predictions per image], images in the model call, model ms): the
        images always run in the same model call (the turn test's four views)."""
        return self._put(_Job(list(images), top_k, single=False))

    def warm(self) -> concurrent.futures.Future:
        """Future done once the model is warm: `model.warm_up()` (upright's Model makes one
        dummy prediction: the ONNX session created and run) in the worker thread, ahead of
        any upload; a stand-in without warm_up is warm at once. Not counted in the figures."""
        return self._put(_Job([], 0, warm=True))

    def _warm_up(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            warm_up = getattr(self.model, "warm_up", None)
            job.future.set_result(warm_up() if warm_up is not None else None)
        except BaseException as exc:  # noqa: BLE001 - /healthz says why
            job.future.set_exception(exc)

    def _put(self, job: _Job) -> concurrent.futures.Future:
        if self._closed:
            raise RuntimeError("the server is shutting down")
        self._queue.put(job)
        return job.future

    @property
    def queued(self) -> int:
        """Jobs waiting for the model (not counting the batch it is running)."""
        return self._queue.qsize()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        stop = False
        while not stop:
            job = self._queue.get()
            if job is None:
                break
            if job.warm:
                self._warm_up(job)
                continue
            batch = [job]
            n_images = len(job.images)
            while n_images < self.max_batch:  # a job is never split; a big one may run alone
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if nxt.warm:
                    self._warm_up(nxt)
                    continue
                batch.append(nxt)
                n_images += len(nxt.images)
            batch = [j for j in batch if j.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            n_images = sum(len(j.images) for j in batch)
            self.busy = True
            t0 = time.perf_counter()
            try:
                k = max(j.top_k for j in batch)
                results = iter(self.model.predict_images([im for j in batch for im in j.images], top_k=k))
                ms = (time.perf_counter() - t0) * 1000
                for j in batch:
                    mine = [list(next(results))[: j.top_k] for _ in j.images]
                    j.future.set_result((mine[0] if j.single else mine, n_images, ms))
            except BaseException as exc:  # noqa: BLE001 - hand any failure to the requests
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(exc)
            finally:
                self.busy = False
                self.batches += 1
                self.images += n_images
                self.largest_batch = max(self.largest_batch, n_images)
        # fail whatever is still queued so no request hangs
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError("the server is shutting down"))
