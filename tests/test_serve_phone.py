"""The phone test (issue 16): a phone-sized Chromium (390 px wide, touch, fake camera) opens
the page the way `serve --lan` serves it (https with its self-signed certificate, the access
token in the link, then the cookie), runs the live camera held in portrait and in landscape,
and runs the turn test on a photo and on camera frames.

The fake camera plays a still video made in code (--use-file-for-fake-video-capture): vertical
or horizontal stripes with coloured corner marks, so the test knows both the right answer and
which way up the frame reached the model. The browser accepts the self-signed certificate as
a phone's user does once (ignore_https_errors, set explicitly). Only 127.0.0.1 is bound.
Screenshots: artifacts/phone-*.png. Skips without chromium/playwright unless
UPRIGHT_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fixtures import (ARTIFACTS, BLUE, GREEN, RED, YELLOW, LiveServer, encode, launch_chromium, marked_stripes, same_colour,
                      stripes_picture, y4m_video)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PORTRAIT, LANDSCAPE = {"width": 390, "height": 844}, {"width": 844, "height": 390}

# The corner marks of the picture an <img> shows, sampled inside each mark: TL, TR, BL, BR.
MARKS_JS = """
(img) => {
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  const w = c.width, h = c.height, dx = Math.round(w * 0.04), dy = Math.round(h * 0.04);
  const out = [];
  for (const y of [dy, h - 1 - dy]) for (const x of [dx, w - 1 - dx]) out.push(Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3)));
  return {w, h, marks: out};
}
"""


@pytest.fixture(scope="module")
def lan_server(stripes_model_dir, tmp_path_factory):
    """What `serve --lan` runs (the app with a token, https with the cached certificate), on loopback."""
    from upright.model import load_model
    from upright.serve import create_app
    from upright.serve.access import new_token
    from upright.serve.tls import certificate_for

    token = new_token()
    cert = certificate_for([], tmp_path_factory.mktemp("tls"))
    with LiveServer(create_app(load_model(stripes_model_dir), model_name="stripes", token=token), cert=cert) as live:
        live.token = token
        yield live


def camera_browser(pw, tmp_path: Path, picture):
    video = tmp_path / "camera.y4m"
    video.write_bytes(y4m_video(picture))
    return launch_chromium(pw, f"--use-file-for-fake-video-capture={video}")


def phone(browser, viewport):
    ctx = browser.new_context(viewport=viewport, device_scale_factor=2, is_mobile=True, has_touch=True,
                              ignore_https_errors=True, permissions=["camera"])
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return ctx, page, errors


def expect(locator):
    from playwright.sync_api import expect as _expect

    return _expect(locator)


def open_with_token(page, live):
    page.goto(f"{live.url}/?token={live.token}")
    assert page.url == live.url + "/", page.url  # the token left the address bar...
    cookie = {c["name"]: c for c in page.context.cookies()}["upright_token"]
    assert cookie["value"] == live.token and cookie["httpOnly"] and cookie["secure"]  # ...for a cookie
    assert cookie["sameSite"] == "Strict"
    expect(page.locator("#model-info")).to_contain_text("labels: horizontal, vertical")


def upright_marks(page, selector: str) -> dict:
    page.wait_for_function("s => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; }",
                           arg=selector)
    got = page.eval_on_selector(selector, MARKS_JS)
    assert all(same_colour(g, w, 60) for g, w in zip(got["marks"], [RED, GREEN, BLUE, YELLOW])), got
    return got


def wait_for_frames(page, n: int = 3):
    """The frame rate appears once two answers are in; wait for n camera answers."""
    deadline = time.monotonic() + 60
    count = 0
    while count < n:
        assert time.monotonic() < deadline, page.text_content("#error")
        with page.expect_response(lambda r: "/api/predict" in r.url, timeout=60_000) as resp:
            pass
        assert resp.value.status == 200, resp.value.text()
        count += 1
    expect(page.locator("#fps")).to_contain_text("frames/s")


def turn_labels(page) -> list[str]:
    return page.locator("#turns .turn .turn-label").all_text_contents()


def no_sideways_scroll(page, width: int):
    got = page.evaluate("document.documentElement.scrollWidth")
    assert got <= width, f"horizontal scrolling: the page is {got}px wide in a {width}px window"


def test_phone_portrait_photo_camera_and_turn_test(playwright, lan_server, tmp_path):
    """Portrait: open the link, turn-test a photo, then the live camera with the turn test on."""
    ARTIFACTS.mkdir(exist_ok=True)
    browser = camera_browser(playwright, tmp_path, marked_stripes("vertical", 240, 320))
    try:
        ctx, page, errors = phone(browser, PORTRAIT)
        open_with_token(page, lan_server)

        # A photo from the phone's gallery, stored sideways with EXIF 6 as phones do.
        page.set_input_files("#file", files=[{"name": "can.jpg", "mimeType": "image/jpeg",
                             "buffer": encode(stripes_picture("vertical", 600, 320, 240), "JPEG", 6)}])
        expect(page.locator("#filename")).to_have_text("can.jpg")
        assert page.text_content("#predictions li:first-child .pred-label") == "vertical"
        page.click("#turn-btn")
        expect(page.locator("#turns .turn")).to_have_count(4)
        assert page.get_attribute("#turn-btn", "aria-pressed") == "true"
        assert turn_labels(page) == ["vertical", "horizontal", "vertical", "horizontal"]
        verdict = page.text_content("#turn-verdict")
        assert verdict.startswith("The answer changes when the picture is turned: the model may have learned orientation")
        assert page.locator("#turns .turn.differs").count() == 2
        shown = [page.eval_on_selector(f"#turns .turn:nth-child({i}) img", "i => [i.naturalWidth, i.naturalHeight]")
                 for i in range(1, 5)]
        assert shown[0][0] > shown[0][1] and shown[1][0] < shown[1][1], shown  # turned views, really turned
        no_sideways_scroll(page, PORTRAIT["width"])
        page.screenshot(path=str(ARTIFACTS / "phone-photo-turn-test.png"), full_page=True)

        # The live camera, phone held upright (portrait frames), turn test still on.
        page.click("#camera-btn")
        expect(page.locator("#camera-controls")).to_be_visible()
        wait_for_frames(page)
        expect(page.locator("#filename")).to_have_text("camera frame")
        assert page.text_content("#predictions li:first-child .pred-label") == "vertical"
        frame = upright_marks(page, "#live-view")  # the frame the model saw: upright...
        assert frame["h"] > frame["w"], frame  # ...and portrait, as the phone is held
        assert "portrait, upright" in page.text_content("#live-caption")
        expect(page.locator("#turns .turn")).to_have_count(4)
        assert turn_labels(page) == ["vertical", "horizontal", "vertical", "horizontal"]
        assert "may have learned orientation" in page.text_content("#turn-verdict")
        no_sideways_scroll(page, PORTRAIT["width"])
        page.screenshot(path=str(ARTIFACTS / "phone-portrait-camera.png"), full_page=True)

        # The same page turned sideways: the layout follows, nothing scrolls sideways.
        page.set_viewport_size(LANDSCAPE)
        wait_for_frames(page, 1)
        no_sideways_scroll(page, LANDSCAPE["width"])
        page.screenshot(path=str(ARTIFACTS / "phone-portrait-camera-turned-screen.png"))

        page.click("#camera-stop")
        expect(page.locator("#camera-controls")).to_be_hidden()
        page.click("#turn-btn")
        expect(page.locator("#turn-test")).to_be_hidden()
        assert errors == [], errors
        ctx.close()
    finally:
        browser.close()


def test_phone_landscape_camera_frames_reach_the_model_upright(playwright, lan_server, tmp_path):
    """Landscape: the phone held sideways gives landscape frames; the model sees them upright."""
    ARTIFACTS.mkdir(exist_ok=True)
    browser = camera_browser(playwright, tmp_path, marked_stripes("horizontal", 320, 240))
    try:
        ctx, page, errors = phone(browser, LANDSCAPE)
        open_with_token(page, lan_server)
        page.click("#camera-btn")
        expect(page.locator("#camera-controls")).to_be_visible()
        wait_for_frames(page)
        frame = upright_marks(page, "#live-view")
        assert frame["w"] > frame["h"], frame
        assert "landscape, upright" in page.text_content("#live-caption")
        assert page.text_content("#predictions li:first-child .pred-label") == "horizontal"
        page.click("#turn-btn")
        expect(page.locator("#turns .turn")).to_have_count(4)
        assert turn_labels(page) == ["horizontal", "vertical", "horizontal", "vertical"]
        no_sideways_scroll(page, LANDSCAPE["width"])
        page.screenshot(path=str(ARTIFACTS / "phone-landscape-camera.png"), full_page=True)
        page.click("#camera-stop")
        assert errors == [], errors
        ctx.close()
    finally:
        browser.close()


def test_phone_without_the_token_is_refused(playwright, lan_server, tmp_path):
    browser = launch_chromium(playwright)
    try:
        ctx, page, _ = phone(browser, PORTRAIT)
        res = page.goto(lan_server.url + "/")
        assert res.status == 403 and "access token" in page.text_content("body")
        res = page.goto(lan_server.url + "/?token=" + "x" * len(lan_server.token))
        assert res.status == 403 and not ctx.cookies()
        ctx.close()
    finally:
        browser.close()
