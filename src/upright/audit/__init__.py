"""`upright audit`: the checks that find shortcuts and broken files before anyone trains on them.

    run.py         the audit run: scan, headers, what the chosen checks need, the JSON result
    checks.py      each check behind one interface (name, needs, parameters, run), Finding
    leakage.py     does a file attribute predict the class, per class or overall? (label_leak)
    stats.py       exact tests (hypergeometric tails), Benjamini-Hochberg, leave-one-out guesser
    sideways.py    pictures whose content looks turned whatever the tag says
    duplicates.py  exact and near duplicates across splits or labels
    severity.py    how bad a finding is: error, warning, info (ranks, --fail-on)
    report.py      the self-contained HTML report
"""

from __future__ import annotations

from .checks import DEFAULT_CHECKS, Check, CheckResult, Finding
from .run import print_summary, run_audit
from .severity import SEVERITY_RANK, fails, worst_severity

__all__ = ["DEFAULT_CHECKS", "Check", "CheckResult", "Finding", "SEVERITY_RANK", "fails", "print_summary",
           "run_audit", "worst_severity"]
