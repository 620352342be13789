"""Self-contained HTML reports (audit, eval, demo): Jinja2 templates and shared macros
(templating.py, templates/), data URLs (html.py) and plots (plots.py)."""
