"""`upright demo`: the soda-can story told offline, end to end.

    data.py    a phone-shot dataset made from photos bundled with installed packages
    story.py   the run: audit, naive vs upright training, evaluation, the summary
    report.py  the one HTML page that tells the story with pictures
"""

from __future__ import annotations

from .story import run_demo

__all__ = ["run_demo"]
