"""Pictures for self-contained HTML pages: images and plots as data URLs, no network.

The pages themselves are Jinja2 templates (templating.py, templates/).
"""

from __future__ import annotations

import base64
import io

from PIL import Image


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
