"""The only command-line entry point: `upright VERB ...` (contracts: docs/contracts.md).

Each verb parses its options here and hands over to the module that does the work; option
defaults are read from those modules (one home per default). Only `serve` and `studio` import
their modules when they run, because those load FastAPI.
Exit codes: 0 ok, 1 findings/failed checks where noted, 2 usage or input error (one line).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import sys
import threading
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__, backbones, presets
from .audit import fails
from .audit import print_summary as print_audit_summary
from .audit import run_audit
from .audit.report import write_report as write_audit_report
from .audit.severity import SEVERITIES
from .cli_usage import Group, Typer, check_model_first
from .contract import LAYOUTS, InputContract
from .pipeline.engines import ENGINES
from .pipeline.scan import DEFAULT_VAL_FRACTION
from .demo import run_demo
from .demo.data import DEFAULT_PHOTOS
from .errors import UprightError, one_line
from .evaluate import DEFAULT_ROTATION_CHECK, ROTATION_CHECKS
from .evaluate import evaluate as run_eval
from .evaluate import print_summary as print_eval_summary
from .export import FORMATS as EXPORT_FORMATS
from .export import run_export
from .fix import ROTATE_MIN_CONFIDENCE, run_fix
from .fix import print_summary as print_fix_summary
from .fix import print_undo_summary, undo_fix
from .embedding.verb import DEFAULT_AUGMENT as EMBED_AUGMENT
from .embedding.verb import print_summary as print_embed_summary
from .embedding.verb import run_embed
from .model import DEFAULT_TOP_K
from .predict import print_table, run_predict, write_csv, write_jsonl
from .serve.defaults import DEFAULT_HOST, DEFAULT_LAN_HOST, DEFAULT_MAX_BATCH, DEFAULT_MAX_BYTES, DEFAULT_PORT
from .studio.defaults import DEFAULT_PORT as STUDIO_PORT
from .studio.defaults import DEFAULT_QUOTA_GB
from .train import train_dataset
from .train import print_summary as print_train_summary
from .words import count

app = Typer(  # cli_usage: plain help with examples, one-line usage errors with "did you mean"
    name="upright",
    cls=Group,
    rich_markup_mode=None,
    help="Train image classifiers from folders of real-world photos, right side up.\n\n"
    "Every image is read upright (EXIF/XMP/HEIF orientation applied once), so the way a "
    "phone stored its pixels never decides the label.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JSON = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")
CACHE = typer.Option(None, "--cache", help="Cache folder (default: the user cache dir, XDG rules).")


def _choices(name: str, values) -> type[Enum]:
    """A CLI choice list (a str Enum, as typer wants) made from the tuple that is its home."""
    return Enum(name, {v: v for v in values}, type=str)


Augment = _choices("Augment", presets.AUGMENT_VARIANTS)
Engine = _choices("Engine", ENGINES)
Device = _choices("Device", backbones.DEVICES)
Preset = _choices("Preset", presets.PRESETS)
FailOn = _choices("FailOn", [s for s in reversed(SEVERITIES) if s != "info"])  # warning, error
ExportFormat = _choices("ExportFormat", EXPORT_FORMATS)
Layout = _choices("Layout", LAYOUTS)
RotationCheck = _choices("RotationCheck", ROTATION_CHECKS)

ENGINE = typer.Option(Engine("local"), "--engine",
                      help="Where the embedding step runs: local (a process pool on this machine, default) or "
                           "ray (Ray Data: a local Ray instance started for the run, or the cluster at --ray-address; "
                           "needs the [ray] extra). Both give the same embeddings.")
RAY_ADDRESS = typer.Option(None, "--ray-address", metavar="ADDR",
                           help="With --engine ray: join this Ray cluster (e.g. ray://head:10001 or auto) "
                                "instead of starting a local instance.")


def emit(result, json_out: bool, human) -> None:
    """The one place `--json` is handled: JSON on stdout (a list: JSON Lines, one per item),
    else `human(result)`. Typed results print their to_dict()."""
    if not json_out:
        human(result)
        return
    items = result if isinstance(result, list) else [result]
    for item in items:
        typer.echo(json.dumps(item.to_dict() if hasattr(item, "to_dict") else item))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"upright {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    pass


@app.command()
def audit(
    data: Path = typer.Argument(..., help="Folder with one sub-folder per class."),
    json_out: bool = JSON,
    report: Optional[Path] = typer.Option(None, "--report", help="Write a self-contained HTML report."),
    fail_on: Optional[FailOn] = typer.Option(None, "--fail-on", help="Exit 1 if a finding is this severe or worse."),
    cache: Optional[Path] = CACHE,
    content: bool = typer.Option(True, "--content/--metadata-only",
                                 help="--metadata-only reads headers and nothing else, no pixel: 2,000 12 MP phone "
                                      "photos take 1.4 s on an empty cache, 0.4 s once recorded. The default also "
                                      "decodes every file once (in the embedding pass, or at 32 px on every core: "
                                      "11.8 s for those photos; the outcome is recorded) and runs the checks that "
                                      "need embeddings (sideways, near duplicates)."),
    checks: Optional[str] = typer.Option(
        None, "--checks", metavar="A,B",
        help="Run only these checks (comma-separated; default all). Unknown names exit 2 with the list."),
    skip: Optional[str] = typer.Option(None, "--skip", metavar="C", help="Leave these checks out (comma-separated)."),
    engine: Engine = ENGINE,
    ray_address: Optional[str] = RAY_ADDRESS,
) -> None:
    """Find unreadable files, duplicates, sideways photos and file attributes that predict the label.

    Checks (names for --checks/--skip): unreadable, classes (empty, single, imbalanced, under 10 images), label_leak (orientation tag, camera, shapes, resolution, format, EXIF, colour mode, JPEG quality, capture day, software, GPS, colour profile, bit depth: per class and overall, exact tests, false alarms held to 5% by Benjamini-Hochberg), tiny, duplicates (same bytes), near_duplicates and sideways (these two need embeddings, so not with --metadata-only).
    """
    result = run_audit(data, cache_dir=cache, progress=not json_out, content=content, checks=checks, skip=skip,
                       engine=engine.value, ray_address=ray_address)
    if report is not None:
        write_audit_report(result, report, data=data)
        result.report = str(report)

    def human(r):
        print_audit_summary(r)
        if report is not None:
            typer.echo(f"report: {report}")

    emit(result, json_out, human)
    if fails(result, fail_on.value if fail_on else None):
        raise typer.Exit(1)


@app.command()
def fix(
    data: Path = typer.Argument(..., help="Folder (or dataset) to fix."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write upright copies here; originals untouched."),
    in_place: bool = typer.Option(False, "--in-place", help="Replace files atomically, keeping a way back (--undo)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would change, write nothing."),
    json_out: bool = JSON,
    rotate_sideways: bool = typer.Option(False, "--rotate-sideways",
                                         help="Also turn back pictures the audit's sideways check flags."),
    min_confidence: float = typer.Option(ROTATE_MIN_CONFIDENCE, "--min-confidence", min=0.0, max=1.0,
                                         help="Sideways probability needed to turn a picture (with --rotate-sideways)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="One row per file (default: a summary)."),
    cache: Optional[Path] = CACHE,
    undo: bool = typer.Option(False, "--undo",
                              help="The way back from --in-place: put every original back byte for byte and "
                                   "remove DATA/.upright-originals/ (exit 1 when fewer are restored than its "
                                   "manifest lists, e.g. a file changed since)."),
) -> None:
    """Write upright copies of photos (lossless for JPEG where possible); never loses data.

    --in-place keeps every replaced original in DATA/.upright-originals/ (same relative
    paths, listed in manifest.jsonl); undo with: upright fix DATA --undo (leaves DATA
    exactly as it was, nothing extra). It never writes through a symbolic link that leads
    outside DATA nor replaces a linked file by a file (such files are skipped, the row says
    why). Temp files a killed run left are removed on the next run. A JPEG it cannot turn
    losslessly is re-encoded at quality 95, and the summary says why (jpegtran not installed:
    apt-get install libjpeg-turbo-progs; or a size no lossless turn fits).
    """
    if undo:
        if out or in_place or rotate_sideways:
            raise UprightError("--undo takes only DATA (with --dry-run and --json if wanted)")
        result = undo_fix(data, dry_run=dry_run)
        emit(result, json_out, print_undo_summary)
        if not result["complete"]:  # fewer originals restored than the manifest lists
            raise typer.Exit(1)
        return
    result = run_fix(data, out=out, in_place=in_place, dry_run=dry_run, rotate_sideways=rotate_sideways,
                     min_confidence=min_confidence, cache_dir=cache, progress=not json_out)
    emit(result, json_out, lambda r: print_fix_summary(r, verbose=verbose))
    if any(f["action"] == "failed" for f in result["files"]):
        raise typer.Exit(1)


@app.command()
def train(
    data: Path = typer.Argument(..., help="Folder with one sub-folder per class (or train/, val/; a test/ beside them is never read)."),
    out: Path = typer.Option(..., "-o", "--out", help="Model folder to write (a new folder; see --force)."),
    force: bool = typer.Option(False, "--force",
                               help="Replace an existing model folder (atomically: a crash leaves the old model "
                               "or the new one). Without it, an existing model is never overwritten (exit 2)."),
    preset: Preset = typer.Option(Preset(presets.DEFAULT_PRESET), "--preset",
                                  help="fast (default): Lite0 features of each photo and its mirror, a linear head. "
                                  "accurate: Lite0+Lite2 features of 10 crops of every photo (centre + 4 corners, each "
                                  "mirrored), the same head, and the same 10 crops averaged at test time: 5-fold CV "
                                  "0.926 vs 0.884 on flowers-500; about 0.2 s a prediction, 9x fast; it also reports "
                                  "what fast validates at on the same photos, and says when fast is as good. Measured "
                                  "for 400 photos on a shared 2-core machine (load average 5-7): fast 40 s the first "
                                  "time (18 s CPU), 7 s once cached; accurate 321 s (185 s CPU), 38 s once cached; "
                                  "eval of 80 new photos 6 s fast, 67 s accurate (docs/accuracy.md: Costs, measured)."),
    backbone: Optional[str] = typer.Option(
        None, "--backbone",
        help="Backbone name (fast preset): efficientnet-lite0 (default, fastest), efficientnet-lite0+lite2 "
             "(both nets on one 260-px crop, features concatenated: about +1.5 points on "
             "flowers-500 for 3x the embedding time), efficientnet-lite1, efficientnet-lite2."),
    augment: Augment = typer.Option(Augment(presets.DEFAULT_AUGMENT), "--augment", help="Training variants: none, flip, rotate, d4."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs of --fine-tune (default 3). The plain head (either preset) is fitted to convergence: --epochs without --fine-tune is refused (exit 2)."),
    fine_tune: bool = typer.Option(False, "--fine-tune", help="Fine-tune the backbone end to end (slow on CPU): one line per epoch (train loss, val accuracy, seconds), the best epoch kept, a checkpoint after every epoch."),
    resume: bool = typer.Option(False, "--resume", help="With --fine-tune: continue a killed or crashed run of the same photos and options from its last checkpoint (kept in .MODEL.upright-checkpoint/ beside MODEL until the model is written)."),
    val_split: float = typer.Option(DEFAULT_VAL_FRACTION, "--val-split", help="Held-out fraction when DATA has no val/ folder."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    no_report: bool = typer.Option(
        False, "--no-report",
        help="Do not write MODEL/report.html. The report reads nothing again (it reuses the run's scan, the header "
             "facts and thumbnails recorded in the cache and the embedding pass's decode results); it costs the "
             "header audit's checks and, the first time, a header read of every photo and up to 24 thumbnails: "
             "a warm re-train of 2,000 phone photos took 1.6 s with it and 1.1 s without, of 50,000 small "
             "photos 10.5 s and 7.9 s (bench/scale.py)."),
    cache: Optional[Path] = CACHE,
    json_out: bool = JSON,
    engine: Engine = ENGINE,
    ray_address: Optional[str] = RAY_ADDRESS,
) -> None:
    """Train a classifier on an embedded, offline ImageNet backbone.

Reads DATA/train and DATA/val (or hash-splits a plain folder-per-class tree); DATA/test is never read: it is for `upright eval`. The head's regularisation is chosen on the val photos, then fitted on train + val, and the model records the fingerprints of every photo it was fitted on, so `eval` can say when it scores them. Writes MODEL/model.json, MODEL/head.safetensors and, unless --no-report, MODEL/report.html (held-out accuracy, per-class figures, confusion matrix, the worst mistakes, the audit's warnings on the training photos). What a run learns about each file (its hash, header facts, whether it decodes) is recorded in the cache: a re-train of cached photos hashes no file it knows and decodes no picture, its report included.

Embeddings (of every --augment variant) are cached by file content, so a re-train is seconds. The default --augment flip (mirror) keeps the model's sense of "up"; d4 adds the 8 rotations/mirrors for pictures with no natural up (microscopy, aerial, top-down).
    """
    result = train_dataset(data, out, backbone=backbone, augment=augment.value, epochs=epochs,
                           fine_tune=fine_tune, val_split=val_split, seed=seed, cache_dir=cache,
                           progress=not json_out, force=force, resume=resume, preset=preset.value,
                           engine=engine.value, ray_address=ray_address, report=not no_report)
    emit(result, json_out, print_train_summary)


@app.command()
def embed(
    data: Path = typer.Argument(..., help="Folder with one sub-folder per class (or train/, val/, test/: all are embedded)."),
    out: Path = typer.Option(..., "-o", "--out", help="Folder for the Parquet shards (created; a re-run into it resumes)."),
    engine: Engine = ENGINE,
    ray_address: Optional[str] = RAY_ADDRESS,
    augment: Augment = typer.Option(Augment(EMBED_AUGMENT), "--augment",
                                    help="Views per photo: none (one row per photo), flip, rotate, d4."),
    backbone: str = typer.Option(backbones.DEFAULT, "--backbone", help=f"Backbone name: {', '.join(backbones.REGISTRY)}."),
    device: Device = typer.Option(Device("auto"), "--device",
                                  help="auto: CUDA when onnxruntime-gpu provides it, else CPU; cpu: CPU even where "
                                       "CUDA is present; cuda: CUDA or an error."),
    cache: Optional[Path] = CACHE,
    json_out: bool = typer.Option(False, "--json",
                                  help='Print {"n", "embedded", "reused", "out", "engine", "seconds", "unreadable", ...} '
                                       "as JSON on stdout."),
) -> None:
    """Write every photo's embedding to Parquet files under OUT: one row per photo and view.

Columns: path, sha256, label, split, backbone, variant, embedding (list of float32). Photos are read upright (the one door), never with Ray's read_images (it ignores EXIF orientation). A re-run into the same OUT reuses the rows already there (by path, content hash and view) and embeds only the rest, so a killed run resumes; unreadable files are listed with their reason and the run goes on. Memory stays flat however many photos: rows stream into shards written whole.
    """
    result = run_embed(data, out, engine=engine.value, ray_address=ray_address, augment=augment.value,
                       backbone=backbone, device=device.value, cache_dir=cache, progress=not json_out)
    emit(result, json_out, print_embed_summary)


@app.command()
def predict(
    model: Path = typer.Argument(..., help="Model folder."),
    images: List[Path] = typer.Argument(..., help="Image files or folders."),
    top_k: int = typer.Option(DEFAULT_TOP_K, "--top-k", help="Labels per image."),
    json_out: bool = typer.Option(False, "--json", help="JSON Lines on stdout, one per image."),
    csv: Optional[Path] = typer.Option(None, "--csv",
                                       help="Also write one CSV row per image: path, orientation, label, score, top, error."),
    output: Optional[Path] = typer.Option(None, "--output",
                                          help="Also write the JSON Lines (one per image) to this file."),
    cache: Optional[Path] = CACHE,
) -> None:
    """Classify images (read upright). Folders are searched for image files.

Exit code 0 when every image was read, 1 when any input could not be read (each one is listed with its reason; the others are still predicted), 2 on a usage error (no model, no image files found).
    """
    check_model_first("predict", model, images)
    preds = run_predict(model, images, top_k=top_k, cache_dir=cache, progress=not json_out)
    if csv is not None:
        write_csv(preds, csv)
    if output is not None:
        write_jsonl(preds, output)
    emit(preds, json_out, print_table)
    failed = sum(1 for p in preds if p.error)
    if failed:
        typer.echo(f"upright: {failed} of {count(len(preds), 'input')} could not be read", err=True)
        raise typer.Exit(1)


@app.command(name="eval")
def evaluate(
    model: Optional[Path] = typer.Argument(None, show_default=False,
                                           help="Model folder (with --onnx or --tflite: leave it out, give DATA only)."),
    data: Optional[Path] = typer.Argument(None, show_default=False,
                                          help="Folder with one sub-folder per class (or train/, val/, test/: test/ is scored)."),
    json_out: bool = JSON,
    report: Optional[Path] = typer.Option(None, "--report", help="Write a self-contained HTML report."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Write one CSV row per photo: path, label, predicted, "
                                       "score, seen_in_training, correct, top, error."),
    cache: Optional[Path] = CACHE,
    rotation_check: RotationCheck = typer.Option(
        RotationCheck(DEFAULT_ROTATION_CHECK), "--rotation-check",
        help="Which test views each turn of the 0/90/180/270° check is scored on. centre (default): the views "
             "at the centre of the picture: all of a fast model's, the centre crop and its mirror of an accurate "
             "model's 10 crops (16 views a photo instead of 40); full: every test view (as predict would score "
             "the turned photo); none: no turns, the upright photos only (a quarter of a fast model's views). "
             "Measured, 80 new photos, an accurate model, a shared 2-core machine: centre 67 s, full 113 s, "
             "none 28 s (docs/accuracy.md: Costs, measured)."),
    onnx_file: Optional[Path] = typer.Option(
        None, "--onnx", metavar="FILE",
        help="Score an ONNX classifier trained elsewhere (TensorFlow, PyTorch, ...) instead of a model folder: "
             "upright eval --onnx FILE DATA. Labels and input contract from the options below, else from the "
             "file's metadata (\"labels\", \"preprocessing\", as upright export writes), else from its input shape."),
    tflite_file: Optional[Path] = typer.Option(
        None, "--tflite", metavar="FILE",
        help="Score a TFLite (LiteRT) classifier instead of a model folder: upright eval --tflite FILE DATA "
             "(needs ai-edge-litert). Input size, layout and dtype from the model (uint8/int8 quantised inputs "
             "fed quantised); labels from --labels, else NAME.labels.txt beside FILE, else a labels file packed in it."),
    labels: Optional[str] = typer.Option(None, "--labels", metavar="A,B,C|FILE",
                                         help="--onnx/--tflite: the class names in output order, or a text file "
                                              "with one a line."),
    input_size: Optional[int] = typer.Option(None, "--input-size", metavar="N",
                                             help="--onnx/--tflite: square input side (default: from the model)."),
    resize: Optional[int] = typer.Option(None, "--resize", metavar="N",
                                         help="--onnx/--tflite: short side before the centre crop "
                                              "(default: input size / 0.875)."),
    mean: Optional[str] = typer.Option(None, "--mean", metavar="M[,M,M]",
                                       help="--onnx/--tflite: input = (pixel - mean) / std, pixels 0-255, RGB "
                                            "(default 0; a quantised input: its quantised range is the pixel range). "
                                            "ImageNet-normalised: --mean 123.675,116.28,103.53 --std 58.395,57.12,57.375; "
                                            "[0, 1]: --std 255; [-1, 1]: --mean 127.5 --std 127.5."),
    std: Optional[str] = typer.Option(None, "--std", metavar="S[,S,S]", help="--onnx/--tflite: see --mean (default 1)."),
    layout: Optional[Layout] = typer.Option(None, "--layout",
                                            help="--onnx/--tflite: input layout (default: the axis of size 3)."),
) -> None:
    """Accuracy, per-class precision/recall/F1, macro-F1, top-k accuracy, confusion matrix and accuracy under 0/90/180/270 rotations, and how many scored photos the model was fitted on.

DATA with a test/ folder is scored on test/ only (train never reads it); else on val/, else on every photo. "seen_in_training" counts scored photos whose content the model was fitted on: when it is not 0, the figures are not a test, and eval says so. "near_copies_of_training" counts the others that are near copies of a training photo (a resized or re-encoded copy: embedding cosine at the audit's near-duplicate threshold, from the record the model folder keeps; unknown for folders written before it). A model trained elsewhere (--onnx, --tflite) records nothing of the kind: seen_in_training is null (unknown), and eval says that too; upright's own ONNX export lying in its model folder is counted from that folder. Photos are read upright either way.
    """
    external = {"--labels": labels, "--input-size": input_size, "--resize": resize, "--mean": mean, "--std": std,
                "--layout": layout}
    foreign = onnx_file or tflite_file
    if onnx_file is not None and tflite_file is not None:
        raise UprightError("give one of --onnx FILE and --tflite FILE")
    if foreign is None:
        given = [k for k, v in external.items() if v is not None]
        if given:
            raise UprightError(f"{', '.join(given)}: only with --onnx FILE or --tflite FILE")
        if model is None or data is None:
            raise UprightError("eval needs MODEL DATA (or --onnx FILE DATA, --tflite FILE DATA)")
        check_model_first("eval", model, [data])
        result = run_eval(model, data, cache_dir=cache, progress=not json_out, report=report, csv=csv,
                          rotation_check=rotation_check.value)
    else:
        from .external import evaluate_onnx, parse_labels, parse_triple

        flag = "--onnx" if onnx_file is not None else "--tflite"
        if model is None or data is not None:
            raise UprightError(f"with {flag} FILE give DATA only: upright eval {flag} FILE DATA")
        if tflite_file is not None:
            from .tflite_runner import evaluate_tflite as run_foreign
        else:
            run_foreign = evaluate_onnx
        result = run_foreign(foreign, model, labels=parse_labels(labels) if labels else None,
                             input_size=input_size, resize=resize,
                             mean=parse_triple(mean, "--mean") if mean is not None else None,
                             std=parse_triple(std, "--std") if std is not None else None,
                             layout=layout.value if layout else None, report=report, csv=csv,
                             rotation_check=rotation_check.value, cache_dir=cache)
    emit(result, json_out, print_eval_summary)


@app.command()
def serve(
    model: Path = typer.Argument(..., help="Model folder."),
    host: Optional[str] = typer.Option(
        None, "--host", show_default=False,
        help=f"Address to bind (default {DEFAULT_HOST}, this machine only; {DEFAULT_LAN_HOST} with --lan). "
        "Any other address without --lan exposes the app, the model and the uploads over plain http "
        "without a token (a warning says so).",
    ),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="Port to listen on (0 picks a free one)."),
    lan: bool = typer.Option(
        False, "--lan",
        help="Test on your phone: listen on this machine's network addresses over https (a "
        "self-signed certificate made for them, kept in the user config dir and reused), require "
        "a fresh access token on every request, and print the link with a QR code to scan.",
    ),
    max_upload_mb: float = typer.Option(DEFAULT_MAX_BYTES / 1e6, "--max-upload-mb", help="Largest upload accepted, in MB (413 beyond)."),
    top_k: int = typer.Option(DEFAULT_TOP_K, "--top-k", help="Labels shown per image."),
    max_batch: int = typer.Option(DEFAULT_MAX_BATCH, "--max-batch", help="Most queued uploads the model runs in one call (1 = no batching)."),
) -> None:
    """Start the web test app: upload, drag and drop or camera; shows what the model saw.

    Uploads over --max-upload-mb get 413 before their body is read; slow clients get 408
    (request head within 10 s, body pauses at most 15 s, 120 s in all); a POST from another
    origin's web page gets 403; uploads decoding at once share one memory budget; every
    error is JSON. The model is warmed at start: /healthz answers 503 ("ready": false) until
    its first prediction has run.
    """
    if max_upload_mb <= 0 or top_k < 1 or max_batch < 1:
        raise UprightError("--max-upload-mb must be > 0, --top-k and --max-batch at least 1")
    from .serve import run as run_server  # loads FastAPI: only when serving

    run_server(model, host=host, port=port, lan=lan, max_bytes=int(max_upload_mb * 1_000_000), top_k=top_k,
               max_batch=max_batch, echo=typer.echo)


@app.command()
def studio(
    project: Path = typer.Argument(..., help="Project folder: an upright DATA folder (one folder per class, or "
                                             "train/ + test/); created when missing."),
    host: Optional[str] = typer.Option(
        None, "--host", show_default=False,
        help=f"Address to bind (default {DEFAULT_HOST}; {DEFAULT_LAN_HOST} with --lan). Without --lan only "
        "loopback addresses: the studio writes to the project."),
    port: int = typer.Option(STUDIO_PORT, "--port", help="Port to listen on (0 picks a free one)."),
    lan: bool = typer.Option(
        False, "--lan",
        help="For the team's phones: https with this machine's self-signed certificate, a fresh access token, "
        "the link and a QR code printed (as serve --lan)."),
    quota_gb: float = typer.Option(DEFAULT_QUOTA_GB, "--quota-gb",
                                   help="Most GB of photos (and trash) the project may hold; uploads past it are refused."),
    max_upload_mb: float = typer.Option(DEFAULT_MAX_BYTES / 1e6, "--max-upload-mb",
                                        help="Largest upload request accepted, in MB (413 beyond)."),
) -> None:
    """The training studio: phones fill the classes, the audit speaks as photos arrive; review, train, test, export.

    Collect (upload, camera, hold for a burst), Review (stored vs upright, turn through fix, move, trash), Train (progress, cancel; a new model folder per run in PROJECT/.upright-models/; its card: val accuracy, recall per class, mistakes, the audit's warnings, the full report), Test (serve's page on any of the project's models), Export (ONNX, TFLite, Core ML). Nothing is deleted: the trash is PROJECT/.upright-trash/.
    """
    if quota_gb <= 0 or max_upload_mb <= 0:
        raise UprightError("--quota-gb and --max-upload-mb must be > 0")
    from .studio import run as run_studio  # loads FastAPI: only when serving

    run_studio(project, host=host, port=port, lan=lan, quota_gb=quota_gb, max_bytes=int(max_upload_mb * 1_000_000),
               echo=typer.echo)


_DEFAULT_CONTRACT = InputContract.for_backbone(backbones.DEFAULT)


@app.command(help=(
    "Export the whole model (backbone + head) to one ONNX file (or Core ML, TFLite).\n\n"
    f"Input \"input\" (for the default {_DEFAULT_CONTRACT.backbone}): {_DEFAULT_CONTRACT.describe_input()}. "
    "Each model's own contract is in its model.json \"preprocessing\" and in the graph's input "
    "description. Output \"probabilities\": [batch, n_labels] in the order of "
    "model.json \"labels\" (averaged over the model's test views, as `predict` does).\n\n"
    "--preprocess: input \"pixels\" uint8 [1, H, W, 3], the picture upright (RGB) at any size; the "
    "graph does the resize (cubic, antialiased), centre crop and scaling itself, so a deployment "
    "needs no preprocessing code. Both graphs carry the labels (metadata \"labels\", a JSON list) "
    "and the input contract (metadata \"preprocessing\"), which `upright eval` reads back.\n\n"
    "coreml (extra [coreml]): an ML program with an RGB image input (the upright centre crop; "
    "scaling inside) and classifier outputs classLabel / classLabel_probs. tflite (extra [tflite], "
    "litert-torch): input uint8 [1, S, S, 3] (the upright centre crop; scaling inside), output the "
    "probabilities, labels in FILE.labels.txt."))
def export(
    model: Path = typer.Argument(..., help="Model folder."),
    format: ExportFormat = typer.Option(ExportFormat("onnx"), "--format", help="Export format."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="File to write (default MODEL/model.onnx; coreml: MODEL/model.mlpackage; "
                                               "tflite: MODEL/model.tflite and model.labels.txt)."),
    preprocess: bool = typer.Option(False, "--preprocess",
                                    help="Take raw upright uint8 pixels of any size: resize, crop(s) and scaling in the "
                                         "graph (every test view, e.g. the 10 crops of an accurate model)."),
) -> None:
    run_export(model, format.value, output, preprocess)


@app.command()
def demo(
    out: Optional[Path] = typer.Option(
        None, "--out",
        help="Write the dataset, both models, demo.json and the report here (a new or empty folder). "
        "Without it everything goes to a fresh temp folder (printed, and kept so the report and "
        "data stay there to explore); nothing is written to the current folder."),
    json_out: bool = typer.Option(
        False, "--json",
        help="Print {naive_accuracy, upright_accuracy, gap, findings, report, ...} as JSON on stdout "
        "(the story goes to stderr)."),
    photos: int = typer.Option(DEFAULT_PHOTOS, "--photos", min=10, help="Training photos per class (test: 2/3 as many)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the generated photos and the training."),
    cache: Optional[Path] = CACHE,
) -> None:
    """The whole story offline: a phone-shot dataset, the audit, naive vs upright training.

    Makes photos from pictures bundled with scikit-image and matplotlib (no network), stores one class sideways with EXIF Orientation 6 as most phones do, audits them, trains the same model twice (tag ignored, like most tools, vs upright), evaluates both on upright test photos and writes an HTML report. About 50 s of CPU time on a first run, 10 s once the embeddings are cached; it prints its own wall-clock and CPU time.
    """
    result = run_demo(out, json_out=json_out, per_class=photos, test_per_class=max(4, photos * 2 // 3), seed=seed,
                      cache_dir=cache)
    emit(result, json_out, lambda r: None)  # the human story was told as it ran


class Terminated(KeyboardInterrupt):
    """SIGTERM (docker stop, schedulers), raised where Ctrl+C would be: every verb keeps its
    finished work the same way (embed its shards, fix its written files)."""


_terminated: list[bool] = [False]  # set by the handler: the usage layer may turn the interrupt into exit 130


def _on_sigterm(signum, frame) -> None:
    _terminated[0] = True
    raise Terminated()


def _default_sigterm_in_child() -> None:
    """A forked worker (a decode pool) dies of SIGTERM at once, as it would without upright's
    handler: a worker blocked in C would never run a Python handler, and its pool would wait."""
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


os.register_at_fork(after_in_child=_default_sigterm_in_child)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: one-line errors with exit 2, never a traceback for user errors;
    a full disk (ENOSPC, EDQUOT) is one of them. SIGTERM is handled like Ctrl+C (exit 143)
    while a verb runs; the previous handler is back afterwards."""
    handle = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if handle else None
    _terminated[0] = False
    try:
        _run(argv)
    finally:
        if handle:
            signal.signal(signal.SIGTERM, previous)


def _run(argv: list[str] | None) -> None:
    try:
        app(args=argv, prog_name="upright")
    except SystemExit:
        if _terminated[0]:  # typer turns the interrupt (Terminated) into exit 130
            _exit_terminated()
        raise
    except UprightError as exc:
        typer.echo(f"upright: error: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # a full disk, whichever library was writing
        if not disk_full(exc):
            raise
        typer.echo(f"upright: error: {disk_full(exc)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        if _terminated[0]:
            _exit_terminated()
        typer.echo("upright: interrupted", err=True)
        sys.exit(130)


def _exit_terminated() -> None:
    typer.echo("upright: terminated (SIGTERM); finished work was kept", err=True)
    sys.exit(143)


def disk_full(exc: BaseException) -> str | None:
    """The one-line reason when `exc` (or what caused it) is a full disk or quota, else None."""
    while exc is not None:
        # OSError from Python's own writes; libraries that write in native code (safetensors' Rust
        # writer raises SafetensorError) only say so in their message
        if (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or any(
                w in str(exc) for w in ("No space left on device", "Disk quota exceeded")):
            where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
            what = getattr(exc, "strerror", None) or one_line(exc, 160)
            return f"{what}{where} (disk full; nothing half-written was left)"
        if isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc):
            return "no space left on device: the cache database is full (nothing half-written was left)"
        exc = exc.__cause__ or exc.__context__
    return None


if __name__ == "__main__":  # pragma: no cover
    main()
