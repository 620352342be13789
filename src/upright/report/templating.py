"""The reports' Jinja2 environment: templates shipped in the package, escaped, strict.

Autoescaping makes every value safe in HTML text and attributes (a label or path with
`<script>` in it is shown, not run); StrictUndefined makes a missing value fail the render
instead of printing an empty string. Templates get plain data (dicts, lists, strings, numbers,
data URLs); numbers are formatted in the template with the `fmt` filter (a Python format spec),
counts with `count` (`{{ n|count("class") }}`: "1 class", "3 classes").
"""

from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined

from ..words import count


def _fmt(value, spec: str) -> str:
    """`{{ x|fmt(".1%") }}`: Python's format(), so templates and f-strings read numbers alike."""
    return format(value, spec)


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("upright.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["count"] = count
    return env


def render(template: str, **context) -> str:
    """Render `template` (a name under report/templates/) with `context`."""
    return environment().get_template(template).render(**context)
