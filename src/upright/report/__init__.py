"""Self-contained HTML reports (audit, eval, demo): page scaffolding, data URLs and plots."""
