"""Run every bench/*.py script and write bench/RESULTS.md (`make bench`).

Each script runs in its own process (`python bench/NAME.py`, its full default run), one
after the other, so one crash or memory spike cannot take the others down. For each we
record the status and wall time and keep its printed table verbatim:
  ok       exit status 0
  skipped  exit status 77 (the script's data is absent); the reason is its last line
  failed   any other exit status, or the time limit; the tail of its output is kept
Failures are reported, never hidden: run_all exits 1 when any script failed.

Usage: python bench/run_all.py [--only a,b] [--timeout SECONDS] [--out bench/RESULTS.md]
(a script in TIME_LIMITS gets its own, longer limit when it is longer than --timeout)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, version  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SKIP = 77
NOT_BENCHES = {"run_all.py", "features.py"}  # features.py: a study with sub-commands (extract, cv), run by hand
#: scripts whose full default run needs more than --timeout (seconds): scale.py embeds 10,000
#: photos and trains and audits up to 50,000 (its photo sets are made once, under /tmp)
TIME_LIMITS = {"scale.py": 3 * 3600}


def scripts(only: list[str] | None = None) -> list[Path]:
    found = sorted(p for p in BENCH.glob("*.py") if p.name not in NOT_BENCHES and not p.name.startswith("_"))
    if only:
        names = {n if n.endswith(".py") else n + ".py" for n in only}
        found = [p for p in found if p.name in names]
    return found


def ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def machine_lines() -> list[str]:
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"- machine: {cpu_model()}, {os.cpu_count()} cores ({affinity} usable), {ram_gib()} RAM, "
        f"{platform.system()} {platform.release()}",
        f"- versions: Python {platform.python_version()}, torch {version('torch')}, onnxruntime "
        f"{version('onnxruntime')}, Pillow {version('pillow')}, numpy {version('numpy')}, "
        f"upright {version('upright')}",
        f"- load average at start: {load} (shared machines: compare rows within one script's run only)",
    ]


def run_one(path: Path, timeout: float) -> dict:
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run([sys.executable, str(path)], cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, env=env)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code = None
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = (exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")) + \
            f"\n(killed after the {timeout:.0f} s time limit)"
    seconds = time.perf_counter() - t0
    if code == 0:
        status, reason = "ok", ""
    elif code == SKIP:
        status = "skipped"
        lines = [ln.strip() for ln in (stderr + "\n" + stdout).splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if "SKIP" in ln.upper()), lines[-1] if lines else "no reason given")
    else:
        status = "failed"
        tail = [ln for ln in stderr.splitlines() if ln.strip()]
        reason = (f"exit status {code}" if code is not None else "time limit") + (f": {tail[-1].strip()}" if tail else "")
    return {"name": path.name, "status": status, "reason": reason, "seconds": seconds, "stdout": stdout,
            "stderr": stderr, "code": code}


HEADLINE = re.compile(r"^summary:|\d+(\.\d+)?x (faster|slower)|[+-]\d+(\.\d+)? points|faster than|cold cache .* warm cache",
                      re.IGNORECASE)


def headlines(stdout: str, limit: int = 3) -> list[str]:
    """The script's own summary lines (ratios, gaps), picked from its output: figures at a glance."""
    found = []
    for line in stdout.splitlines():
        text = line.strip()
        if text.startswith("│"):  # a row of a box-drawn table: keep its cells
            text = " · ".join(c.strip() for c in text.strip("│").split("│") if c.strip())
        if not text or text[0] in "|┃┏┡└{[\"" or not HEADLINE.search(text):
            continue
        found.append(text)
    return found[:limit]


def render(results: list[dict], started: dt.datetime, total_s: float, machine: list[str]) -> str:
    lines = ["# Benchmark results", "",
             f"Written by `make bench` (bench/run_all.py) on {started:%Y-%m-%d %H:%M} "
             f"(local time), {total_s:.0f} s in all. Each script ran in its own process, one after "
             "the other; every figure below was measured in that script's own run.", ""]
    lines += machine + [""]
    lines += ["| script | status | wall time | headline (the script's own summary) |", "|---|---|---:|---|"]
    for r in results:
        if r["status"] == "ok":
            note = "<br>".join(headlines(r["stdout"]))
        else:
            note = r["reason"]
        lines.append(f"| `bench/{r['name']}` | {r['status']} | {r['seconds']:.0f} s | {note.replace('|', '/')} |")
    lines.append("")
    for r in results:
        lines += [f"## bench/{r['name']}: {r['status']} ({r['seconds']:.0f} s)", ""]
        if r["status"] == "skipped":
            lines += [f"Skipped: {r['reason']}", ""]
            continue
        body = r["stdout"].rstrip()
        if body:
            lines += [_as_markdown(body), ""]
        if r["status"] == "failed":
            tail = "\n".join(r["stderr"].rstrip().splitlines()[-25:])
            lines += [f"**Failed** ({r['reason']}). Last lines of stderr:", "", "```", tail, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def _as_markdown(text: str) -> str:
    """Output with markdown tables stays markdown (titles demoted under the script's heading);
    anything else (JSON, fixed-width or box-drawn tables) goes verbatim into one code block."""
    if not any(line.startswith("|") for line in text.splitlines()):
        return "\n".join(["```text", text, "```"])
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append("#" * min(6, level + 2) + line[level:])
        elif line.startswith("|") or not line.strip():
            out.append(line)
        else:
            out.append(line + "  ")  # a line break, as printed
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=None, help="comma-separated script names (default: every bench/*.py)")
    ap.add_argument("--timeout", type=float, default=1800,
                    help="seconds per script (default 1800; longer for those in TIME_LIMITS)")
    ap.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from upright.atomic import atomic_write_text

    started = dt.datetime.now()
    machine = machine_lines()
    todo = scripts(args.only.split(",") if args.only else None)
    if not todo:
        print("no benchmark scripts found", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    results = []
    for path in todo:
        print(f"== bench/{path.name} ...", file=sys.stderr, flush=True)
        r = run_one(path, max(args.timeout, TIME_LIMITS.get(path.name, 0)))
        print(f"   {r['status']} in {r['seconds']:.0f} s" + (f" ({r['reason']})" if r["reason"] else ""),
              file=sys.stderr, flush=True)
        if r["stdout"].strip():
            print(r["stdout"].rstrip(), flush=True)
        results.append(r)
    total = time.perf_counter() - t0
    atomic_write_text(args.out, render(results, started, total, machine))
    failed = [r["name"] for r in results if r["status"] == "failed"]
    print(f"wrote {args.out} ({len(results)} scripts, {len(failed)} failed) in {total:.0f} s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
