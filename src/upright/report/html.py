"""Self-contained HTML pages: inline CSS, images and plots as data URLs, no network."""

from __future__ import annotations

import base64
import html
import io
from typing import Iterable

from PIL import Image

CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #dde1e7;padding-bottom:4px}
.sub{color:#5b6475}.card{background:#fff;border:1px solid #dde1e7;border-radius:10px;padding:14px 16px;margin:10px 0}
.error{border-left:5px solid #c62828}.warning{border-left:5px solid #ef8f00}.info{border-left:5px solid #1e88e5}
.badge{display:inline-block;font-size:12px;font-weight:600;border-radius:6px;padding:1px 7px;margin-right:6px;color:#fff}
.badge.error{background:#c62828}.badge.warning{background:#ef8f00}.badge.info{background:#1e88e5}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #dde1e7;padding:4px 9px;text-align:left}th{background:#eef1f5}
.grid{display:flex;flex-wrap:wrap;gap:12px}.thumb{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:6px;font-size:12px;max-width:260px}
.thumb img{display:block;max-width:120px;max-height:120px;image-orientation:none}.pair{display:flex;gap:6px;align-items:flex-end}
img.plot{max-width:100%;height:auto}.big{font-size:30px;font-weight:700}code{background:#eef1f5;padding:1px 4px;border-radius:4px}
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def image_data_url(img: Image.Image, max_side: int = 240, fmt: str = "JPEG") -> str:
    """A small inline copy of an image (pixels as given: no orientation tag is written)."""
    im = img.convert("RGB")
    im.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, fmt, quality=85) if fmt == "JPEG" else im.save(buf, fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


def figure_data_url(fig) -> str:
    """A matplotlib figure as an inline PNG; closes the figure."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def page(title: str, body: Iterable[str] | str, subtitle: str = "") -> str:
    """A whole HTML document around already-escaped body fragments."""
    content = body if isinstance(body, str) else "\n".join(body)
    sub = f'<p class="sub">{esc(subtitle)}</p>' if subtitle else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><main><h1>{esc(title)}</h1>{sub}{content}</main></body></html>"
    )
