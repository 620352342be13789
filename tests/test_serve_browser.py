"""`upright serve`: the page in a real browser (Debian chromium driven by Playwright).

Never downloads a browser: Playwright launches /usr/bin/chromium via executable_path.
Skips (with the reason) when chromium or playwright is missing, unless
UPRIGHT_REQUIRE_BROWSER=1 (CI), where a missing browser fails the test.
Screenshots go to artifacts/serve.png and artifacts/serve-phone.png.
"""

from __future__ import annotations

import pytest

from fixtures import ARTIFACTS, BLUE, GREEN, RED, YELLOW, LiveServer, asym_picture, encode, same_colour, stripes_picture

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(stripes_model_dir):
    from upright.model import load_model
    from upright.serve import create_app

    model = load_model(stripes_model_dir)
    with LiveServer(create_app(model, model_name="stripes")) as live:
        yield live


# Read back the pixels the page shows: draw the <img> on a canvas, sample the corner blocks.
CORNERS_JS = """
(img) => {
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  const w = c.width, h = c.height;
  const xs = [Math.floor(w / 6), w - 1 - Math.floor(w / 6)], ys = [Math.floor(h / 6), h - 1 - Math.floor(h / 6)];
  const out = [];
  for (const y of ys) for (const x of xs) out.push(Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3)));
  return {w, h, corners: out, shownW: img.getBoundingClientRect().width, shownH: img.getBoundingClientRect().height};
}
"""


def expect(locator):
    from playwright.sync_api import expect as _expect

    return _expect(locator)


def upload(page, name: str, data: bytes, mime: str = "image/jpeg"):
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": data}])


def test_page_shows_the_upright_view_the_stored_pixels_and_the_label(browser, server):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1200, "height": 860})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server.url + "/")
    expect(page.locator("#model-info")).to_contain_text("labels")  # no eval: the page's CSP forbids it
    assert "horizontal" in page.text_content("#model-info")

    # 1. Asymmetric picture stored sideways with tag 6: the page must show it upright.
    upload(page, "sideways.jpg", encode(asym_picture(192, 128), "JPEG", 6))
    expect(page.locator("#filename")).to_have_text("sideways.jpg")
    view = page.eval_on_selector("#view", CORNERS_JS)
    assert view["w"] > view["h"], view  # landscape, as the picture is upright
    assert view["shownW"] > view["shownH"], view  # and displayed that way
    for got, want in zip(view["corners"], [RED, GREEN, BLUE, YELLOW]):
        assert same_colour(got, want), view
    stored = page.eval_on_selector("#stored", CORNERS_JS)
    assert page.is_visible("#stored-figure")
    assert stored["h"] > stored["w"], stored  # the raw stored pixels: portrait, i.e. sideways
    assert "stored sideways (EXIF 6)" in page.text_content("#note")

    # 2. Vertical stripes stored sideways: the label text appears, the stored view too.
    upload(page, "stripes-exif6.jpg", encode(stripes_picture("vertical", 300, 320, 240), "JPEG", 6))
    expect(page.locator("#filename")).to_have_text("stripes-exif6.jpg")
    first = page.text_content("#predictions li:first-child .pred-label")
    assert first == "vertical"
    assert "%" in page.text_content("#predictions") and "ms" in page.text_content("#timing")
    assert page.is_visible("#stored-figure") and "upright turned it" in page.text_content("#note")
    page.screenshot(path=str(ARTIFACTS / "serve.png"), full_page=True)

    # 3. Junk: a readable error, and the page keeps working afterwards.
    upload(page, "notes.txt", b"just some text\n", "text/plain")
    page.wait_for_selector("#error:not([hidden])")
    assert "Not an image" in page.text_content("#error")
    upload(page, "flat.png", encode(stripes_picture("horizontal", 301), "PNG"), "image/png")
    expect(page.locator("#filename")).to_have_text("flat.png")
    assert page.is_hidden("#error") and page.is_hidden("#stored-figure")
    assert page.text_content("#predictions li:first-child .pred-label") == "horizontal"
    # the only console error allowed is the browser logging the 415 we provoked on purpose
    assert [e for e in errors if "status of 415" not in e] == [], errors
    page.close()


def test_page_fits_a_phone_screen(browser, server):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                              is_mobile=True, has_touch=True)
    page = ctx.new_page()
    page.goto(server.url + "/")
    upload(page, "phone.jpg", encode(stripes_picture("vertical", 302, 320, 240), "JPEG", 6))
    expect(page.locator("#filename")).to_have_text("phone.jpg")
    assert page.text_content("#predictions li:first-child .pred-label") == "vertical"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"horizontal scrolling on a phone: page is {width}px wide"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-phone.png"), full_page=True)
    ctx.close()


@pytest.mark.slow
def test_live_camera_sends_frames_one_at_a_time(browser, server):
    """The order of requests comes from the browser itself (Request.timing), not from when
    Python hears about the events, so a loaded CI machine cannot fake an overlap. The rate
    (one frame per LIVE_INTERVAL_MS) is not asserted: no timing assertions in tests."""
    import time

    ctx = browser.new_context(viewport={"width": 1000, "height": 800}, permissions=["camera"])
    page = ctx.new_page()
    spans: list[tuple[float, float]] = []  # (start, end) of each /api/predict, browser clock, ms
    failed: list[str] = []

    def finished(req):
        if "/api/predict" in req.url:
            t = req.timing
            spans.append((t["startTime"], t["startTime"] + max(t["responseEnd"], 0)))

    page.on("requestfinished", finished)
    page.on("requestfailed", lambda req: failed.append(req.url))
    page.goto(server.url + "/")
    expect(page.locator("#model-info")).to_contain_text("labels")
    page.click("#camera-btn")
    expect(page.locator("#camera-controls")).to_be_visible()
    deadline = time.monotonic() + 30
    while len(spans) < 3:
        assert time.monotonic() < deadline, (spans, page.text_content("#error"))
        page.wait_for_timeout(100)
    expect(page.locator("#filename")).to_have_text("camera frame")
    assert page.locator("#predictions li").count() == 2
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-camera.png"))
    page.click("#camera-stop")
    page.wait_for_timeout(1000)  # let an answer already on its way land
    sent = len(spans)
    page.wait_for_timeout(1200)
    assert len(spans) == sent, "frames kept coming after Stop camera"
    assert not failed, failed
    spans.sort()
    assert all(e > s for s, e in spans), spans  # the browser reported when each answer ended
    for (_, e0), (s1, _) in zip(spans, spans[1:]):
        assert s1 >= e0 - 1, f"a frame was sent before the previous answer arrived: {spans}"
    ctx.close()
