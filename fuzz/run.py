"""Run every fuzz target in turn (niced, capped) and print one summary line per target.

    python fuzz/run.py --seconds 60          # what `make fuzz SECONDS=60` runs
    python fuzz/run.py --runs 100000         # a fixed number of inputs per target

Each target runs in its own process under an address-space cap (fuzz/targets.py) and
libFuzzer's -rss_limit_mb=1024 (peak RSS per input, the memory contract) and -timeout=10
(a hang). Findings land in fuzz/work/<target>/crash-*; exit status 1 if there are any.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ("open", "sized", "describe", "families")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=0, help="time per target (0: no limit)")
    ap.add_argument("--runs", type=int, default=0, help="inputs per target (0: no limit)")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", type=Path, default=HERE / "work")
    args = ap.parse_args()
    if not args.seconds and not args.runs:
        args.seconds = 60
    seeds = args.work / "seeds"
    subprocess.run([sys.executable, str(HERE / "corpus.py"), str(seeds)], check=True)
    failed = False
    for name in args.targets.split(","):
        corpus = args.work / name
        corpus.mkdir(parents=True, exist_ok=True)
        flags = ["-max_len=65536", "-rss_limit_mb=1024", "-timeout=10", f"-seed={args.seed}",
                 "-print_final_stats=1", f"-artifact_prefix={corpus}/"]
        if args.seconds:
            flags.append(f"-max_total_time={args.seconds}")
        if args.runs:
            flags.append(f"-runs={args.runs}")
        cmd = ["nice", "-n", "10", sys.executable, str(HERE / "targets.py"), name, *flags, str(corpus), str(seeds)]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
        out = proc.stdout + proc.stderr
        stat = dict(re.findall(r"stat::(\w+):\s+(\S+)", out))
        crashes = sorted(p.name for p in corpus.glob("crash-*")) + sorted(p.name for p in corpus.glob("timeout-*")) \
            + sorted(p.name for p in corpus.glob("oom-*"))
        ok = proc.returncode == 0 and not crashes
        failed |= not ok
        print(f"fuzz {name:8s} inputs={stat.get('number_of_executed_units', '?'):>7s} "
              f"exec/s={stat.get('average_exec_per_sec', '?'):>5s} peak_rss_mb={stat.get('peak_rss_mb', '?'):>5s} "
              f"slowest_s={stat.get('slowest_unit_time_sec', '?')} findings={len(crashes)} "
              f"exit={proc.returncode} wall_s={time.time() - t0:.0f}", flush=True)
        if not ok:
            print("\n".join(out.splitlines()[-40:]), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
