"""`upright demo`: the soda-can story on bundled photos, offline, measured.

1. build a phone-shot dataset from photos that ship inside installed packages (data.py);
2. audit the training photos (the product's own audit) and show the orientation finding;
3. train twice on the same files with the product's own train code, same backbone, same head:
   once reading the pixels as stored with the tag ignored (a faithful imitation of
   EXIF-ignoring loaders: Pillow's plain Image.open, torchvision's ImageFolder, Keras,
   tf.io), once upright;
4. evaluate both on new upright test photos (the product's own eval, with its rotation check);
5. write one self-contained HTML report (report.py).

The only difference between the two models is `orient=False` vs `orient=True`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from ..audit import run_audit
from ..audit.severity import SEVERITY_COLOUR
from ..console import err
from ..console import out as stdout
from ..errors import UprightError
from ..evaluate import evaluate
from ..train import train_dataset
from .data import DEFAULT_PHOTOS, build_dataset, test_photos_for
from .report import orientation_finding, rotation_drop, write_report

NAIVE_NAME = "naive (tag ignored)"
UPRIGHT_NAME = "upright"
NAIVE_HOW = ("pixels as stored, EXIF Orientation ignored: a faithful imitation of Pillow's plain "
             "Image.open, torchvision's ImageFolder, Keras and tf.io")
UPRIGHT_HOW = "EXIF Orientation applied once, as the phone and every photo viewer show the photo"
REPORT_NAME = "upright-demo-report.html"


def _prepare_out(out) -> tuple[Path, bool]:
    if out is None:
        return Path(tempfile.mkdtemp(prefix="upright-demo-")), True
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UprightError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        raise UprightError(f"{out}: already exists and is not empty (the demo writes a fresh dataset; "
                           "choose a new folder)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UprightError(f"{out}: cannot create the folder ({exc.strerror or exc})") from exc
    return out, False


def run_demo(out=None, *, json_out: bool = False, per_class: int = DEFAULT_PHOTOS,
             test_per_class: int | None = None, seed: int = 0, cache_dir=None, progress: bool | None = None) -> dict:
    """Run the whole story; returns the demo JSON. `out=None` works in a fresh temp folder (kept)."""
    test_per_class = test_photos_for(per_class) if test_per_class is None else test_per_class
    if per_class < 10 or test_per_class < 4:
        raise UprightError("the demo needs at least 10 training and 4 test photos per class")
    story = _Story(json_out, progress, seed, cache_dir)
    story.begin(out)
    data = story.photos(per_class, test_per_class)
    audit, finding = story.audit(data)
    runs = story.train_twice(data)
    story.evaluate_both(data, runs)
    story.compare(data, runs)
    return story.report(data, audit, finding, runs)


class _Story:
    """The demo's chapters, told in order on the terminal (stderr with --json), each timed."""

    def __init__(self, json_out: bool, progress: bool | None, seed: int, cache_dir):
        self.t0, self.cpu0 = time.perf_counter(), _cpu_seconds()
        self.say = err if json_out else stdout  # with --json, stdout holds the JSON only
        self.show = (not json_out) if progress is None else progress
        self.seed, self.cache_dir = seed, cache_dir
        self.timings: dict[str, float] = {}

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = time.perf_counter() - started

    def begin(self, out) -> None:
        self.root, self.temp = _prepare_out(out)
        self.say.rule("[bold]upright demo[/bold]: why a model must read photos upright")
        self.say.print(f"Working folder: {escape(str(self.root))}" + (
            "  (a temp folder, kept so you can open the report and explore; pass --out DIR to choose)"
            if self.temp else ""))

    def photos(self, per_class: int, test_per_class: int):
        """1. The data."""
        say = self.say
        say.print("\n[bold]1. The photos[/bold] (made now, offline, from photos that ship with installed packages)")
        t = time.perf_counter()
        data = build_dataset(self.root / "data", per_class=per_class, test_per_class=test_per_class, seed=self.seed)
        self._timed("dataset", t)
        for line in data.story():
            say.print(f"  - {escape(line)}")
        say.print(f"  Training photos: {escape(str(data.train_dir))}\n  Test photos:     {escape(str(data.test_dir))}")
        return data

    def audit(self, data) -> tuple[dict, dict | None]:
        """2. The audit, before training: does a file attribute predict the label?"""
        say = self.say
        say.print(f"\n[bold]2. upright audit {data.train_dir.name}[/bold] (before training: does a file attribute "
                  "predict the label?)")
        t = time.perf_counter()
        # Header facts only: the shortcut lives in the files' metadata. (`upright audit` also runs a
        # content pass by default: sideways-looking pictures and near-duplicates; see its --help.)
        audit = run_audit(data.train_dir, cache_dir=self.cache_dir, progress=self.show, content=False)
        self._timed("audit", t)
        finding = orientation_finding(audit["findings"])
        for f in audit["findings"]:
            sev = f["severity"]
            what = f["kind"] + (f" ({f['attribute']})" if f.get("attribute") else "")
            say.print(f"  [{SEVERITY_COLOUR.get(sev, 'white')}]{sev}[/] {what}: {escape(f['message'])}")
        if not audit["findings"]:
            say.print("  no findings")
        if finding is None:
            say.print("  [red]the audit did not report the orientation shortcut[/red]")
        return audit, finding

    def train_twice(self, data) -> dict:
        """3. The same model trained twice on the same files: tag ignored, then upright."""
        say = self.say
        say.print("\n[bold]3. Train twice on the same files[/bold] (same backbone, same head, same seed; "
                  "only the way the pixels are read differs)")
        runs = {}
        for key, name, orient, how in (("naive", NAIVE_NAME, False, NAIVE_HOW),
                                       ("upright", UPRIGHT_NAME, True, UPRIGHT_HOW)):
            say.print(f"  [bold]{name}[/bold]: {how}")
            t = time.perf_counter()
            res = train_dataset(data.train_dir, self.root / "models" / key, orient=orient, seed=self.seed,
                                cache_dir=self.cache_dir, progress=self.show)
            self._timed(f"train_{key}", t)
            say.print(f"    validation accuracy {res['val_accuracy']:.1%} ({res['val_method']}, "
                      f"{res['n_train']} train / {res['n_val']} held out from the same phones)")
            runs[key] = {"train": res, "name": name, "how": how}
        return runs

    def evaluate_both(self, data, runs: dict) -> None:
        """4. Both models on new upright test photos, with the rotation check."""
        self.say.print(f"\n[bold]4. Evaluate both on {sum(data.n_test.values())} new upright test photos[/bold] "
                       "(plus the rotation check: the same photos turned 90/180/270°)")
        for key in ("naive", "upright"):
            t = time.perf_counter()
            runs[key]["eval"] = evaluate(self.root / "models" / key, data.test_dir, cache_dir=self.cache_dir,
                                         progress=self.show)
            self._timed(f"eval_{key}", t)

    def compare(self, data, runs: dict) -> None:
        """The table of both models and what it shows."""
        say = self.say
        table = Table(title="Accuracy on the upright test photos")
        for col in ("model", "val", "test", *(f"recall {lab}" for lab in data.labels), "turned 0/90/180/270°"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for key in ("naive", "upright"):
            r, ev = runs[key], runs[key]["eval"]
            table.add_row(r["name"], f"{r['train']['val_accuracy']:.1%}", f"[bold]{ev['accuracy']:.1%}[/bold]",
                          *[f"{ev['per_class'][lab]['recall']:.0%}" for lab in data.labels],
                          " / ".join(f"{v:.0%}" for v in ev["rotations"].values()))
        say.print(table)
        say.print("  val: the held-out part of the training photos (same phones); test: new photos, stored upright.")
        naive, upright = runs["naive"], runs["upright"]
        gap = upright["eval"]["accuracy"] - naive["eval"]["accuracy"]
        sideways_label = next(lab for lab in data.labels if any(p["orientation"] == 6 for p in data.phones[lab]))
        say.print(
            f"  Gap: {gap * 100:+.1f} points for upright. The naive model learned \"lying on its side\" = "
            f"'{sideways_label}': on upright photos it recalls {naive['eval']['per_class'][sideways_label]['recall']:.0%} "
            f"of '{sideways_label}'. Its own validation split ({naive['train']['val_accuracy']:.0%}) could not "
            "tell: it was shot by the same phones.")
        say.print(f"  Rotation check (the test photos turned 90/180/270°): upright moves by at most "
                  f"{rotation_drop(upright['eval']['rotations']) * 100:.0f} points (the light's colour does not depend "
                  f"on the way up), naive by up to {rotation_drop(naive['eval']['rotations']) * 100:.0f} (it decides by "
                  "the way up). Neither was trained with rotations; `--augment d4` makes a model steady when photos "
                  "arrive turned for real (see bench/shortcut.py).")

    def report(self, data, audit: dict, finding: dict | None, runs: dict) -> dict:
        """5. The report page and demo.json; the closing lines."""
        t = time.perf_counter()
        root = self.root
        report_path = root / REPORT_NAME
        result = _result(root, self.temp, report_path, data, audit, finding, runs, self.seed)
        write_report(result, audit, data, report_path)
        self._timed("report", t)
        result["seconds"] = round(time.perf_counter() - self.t0, 3)
        result["cpu_seconds"] = round(_cpu_seconds() - self.cpu0, 3)  # this process and its decode workers
        result["timings"] = {k: round(v, 3) for k, v in self.timings.items()}
        (root / "demo.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        self.say.print(f"\n[bold]5. Report[/bold]: {escape(str(report_path))}")
        load = _load_average()
        self.say.print(
            f"Done in {result['seconds']:.0f} s ({result['cpu_seconds']:.0f} s of CPU time"
            + (f"; load average {load:.1f} on {os.cpu_count()} cores" if load is not None else "")
            + "). Explore the data with the other verbs:\n"
            f"  upright audit {escape(_short(data.train_dir))} --report audit.html\n"
            f"  upright eval {escape(_short(root / 'models' / 'naive'))} {escape(_short(data.test_dir))}\n"
            f"  upright train {escape(_short(data.train_dir))} -o model --augment d4")
        return result


def _result(root: Path, temp: bool, report_path: Path, data, audit: dict, finding, runs: dict, seed: int) -> dict:
    """The demo JSON (before its timings)."""
    def model(key: str, how: str) -> dict:
        return {"how": how, "model": str(root / "models" / key), "val_accuracy": runs[key]["train"]["val_accuracy"],
                **{k: runs[key]["eval"][k] for k in ("accuracy", "per_class", "confusion", "labels", "rotations")}}

    naive_acc, upright_acc = runs["naive"]["eval"]["accuracy"], runs["upright"]["eval"]["accuracy"]
    return {
        "naive_accuracy": naive_acc,
        "upright_accuracy": upright_acc,
        "gap": round(upright_acc - naive_acc, 6),
        "backbone": runs["upright"]["train"]["backbone"],
        "findings": audit["findings"],
        "report": str(report_path),
        "orientation_finding": finding is not None,
        "out": str(root),
        "temporary": temp,
        "data": {"train": str(data.train_dir), "test": str(data.test_dir), "labels": list(data.labels),
                 "n_train": data.n_train, "n_test": data.n_test, "sources": data.sources,
                 "phones": data.phones, "story": data.story(), "seed": seed},
        "naive": model("naive", NAIVE_HOW),
        "upright": model("upright", UPRIGHT_HOW),
    }


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the decode workers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _short(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
        return rel if not rel.startswith("..") else str(path)
    except ValueError:
        return str(path)
