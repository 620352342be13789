"""`upright studio` in a real browser: a desktop Chromium and a 390-px phone Chromium with a fake
camera, on the same studio at once (Debian chromium driven by Playwright, loopback only).

Create two classes, upload photos stored sideways (EXIF 6) from the desktop and upright ones plus
camera captures from the phone, see the orientation finding on both pages, turn a photo on the
Review tab, train with visible progress, run the turn test in the Test tab, export ONNX.
Screenshots (390 and 1366 px wide) go to $UPRIGHT_STUDIO_SHOTS, else the test's temp folder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from fixtures import LiveServer, class_picture, encode

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def expect(locator):
    from playwright.sync_api import expect as _expect

    return _expect(locator)


def jpegs(cls: int, n: int, orientation=None, start: int = 0) -> list[dict]:
    return [{"name": f"IMG_{cls}{i:03d}.jpg", "mimeType": "image/jpeg",
             "buffer": encode(class_picture(cls, start + i), "JPEG", orientation)} for i in range(n)]


def card(page, name: str):
    return page.locator(f'.class-card[data-class="{name}"]')


class Pages:
    """Both browsers, their errors, and where their screenshots go."""

    def __init__(self, browser, url: str, shots: Path):
        self.shots = shots
        self.errors: list[str] = []
        self.desk = self._page(browser, url, {"width": 1366, "height": 900}, False)
        self.phone = self._page(browser, url, {"width": 390, "height": 844}, True)

    def _page(self, browser, url, viewport, mobile):
        ctx = browser.new_context(viewport=viewport, is_mobile=mobile, has_touch=mobile, accept_downloads=True)
        page = ctx.new_page()
        page.on("pageerror", lambda e: self.errors.append(f"{viewport['width']}: {e}"))
        page.on("console", lambda m: self.errors.append(f"{viewport['width']}: {m.text}") if m.type == "error" else None)
        page.goto(url + "/")
        expect(page.locator("#live")).to_have_text("live")
        return page

    def close(self) -> None:
        for page in (self.desk, self.phone):
            page.context.close()  # their event streams end before the server does

    def shot(self, name: str) -> None:
        self.shots.mkdir(parents=True, exist_ok=True)
        for page in (self.desk, self.phone):
            page.evaluate("window.scrollTo(0, 0)")  # the sticky tab bar where a person sees it
        self.desk.screenshot(path=str(self.shots / f"{name}-1366.png"), full_page=True)
        self.phone.screenshot(path=str(self.shots / f"{name}-390.png"), full_page=True)


def collect(p: Pages) -> None:
    for name in ("diet", "zero"):
        p.desk.fill("#new-class-name", name)
        p.desk.click("#new-class button[type=submit]")
        expect(card(p.desk, name)).to_be_visible()
    expect(card(p.phone, "zero")).to_be_visible()  # the phone hears the new classes
    card(p.desk, "diet").locator(".upload-input").set_input_files(jpegs(0, 8, orientation=6))
    card(p.phone, "zero").locator(".upload-input").set_input_files(jpegs(1, 8))
    expect(card(p.desk, "diet").locator(".status")).to_contain_text("8 stored")
    expect(card(p.phone, "zero").locator(".status")).to_contain_text("8 stored")
    # the phone's camera: one photo, then a burst while the button is held
    card(p.phone, "zero").locator(".camera-btn").click()
    expect(p.phone.locator("#camera")).to_be_visible()
    p.phone.wait_for_function("document.getElementById('camera-video').videoWidth > 0")
    p.phone.click("#camera-shot")
    p.phone.locator("#camera-burst").dispatch_event("pointerdown")
    p.phone.wait_for_timeout(700)
    p.phone.locator("#camera-burst").dispatch_event("pointerup")
    expect(p.phone.locator("#camera-status")).to_contain_text("taken for 'zero'")
    p.phone.wait_for_function("""() => {
        const c = document.querySelector('.class-card[data-class="zero"] .count');
        return c && /\\(\\d+ from the page's camera/.test(c.textContent) && !/sending/.test(
            document.querySelector('.class-card[data-class="zero"] .status').textContent) }""")
    p.phone.click("#camera-close")
    for page in (p.desk, p.phone):  # counts and the finding, live on both pages
        expect(card(page, "diet").locator(".count")).to_contain_text("8 photos")
        finding = page.locator('.finding[data-attribute="exif_orientation"] .headline')
        expect(finding).to_contain_text("'diet': 100% stored sideways (tag 6)")
        expect(finding).to_contain_text("'zero': 0%")
        expect(page.locator('.finding[data-attribute="exif_orientation"] .finding-thumbs img').first).to_be_visible()
    p.shot("collect")


def review(p: Pages) -> None:
    d = p.desk
    d.click("#tab-btn-review")
    d.select_option("#review-class", "diet")
    expect(d.locator(".tile")).to_have_count(8)
    expect(d.locator(".tile .stored-box")).to_have_count(8)  # every 'diet' photo stored sideways
    before = set(d.eval_on_selector_all(".tile img.upright", "els => els.map(e => e.getAttribute('src'))"))
    d.locator('.tile button[title="Turn 90° clockwise"]').first.click()
    expect(d.locator(".tile .stored-box")).to_have_count(7)  # that one is stored upright now (through fix)
    after = set(d.eval_on_selector_all(".tile img.upright", "els => els.map(e => e.getAttribute('src'))"))
    new = (after - before).pop()  # new bytes, a new thumbnail: shown at once on the phone's Collect tab too
    assert len(after - before) == 1
    p.phone.wait_for_function("""src => [...document.querySelectorAll('.class-card[data-class="diet"] .thumbs img')]
        .some(i => i.getAttribute('src') === src && i.complete && i.naturalWidth > 0)""", arg=new)
    undo = d.locator('.tile button[title="Put this photo back exactly as it was uploaded"]')
    expect(undo).to_have_count(1)  # on the turned photo only
    p.shot("review-turned")
    undo.click()
    expect(d.locator(".tile .stored-box")).to_have_count(8)  # back as uploaded, the original bytes
    expect(undo).to_have_count(0)
    assert set(d.eval_on_selector_all(".tile img.upright", "els => els.map(e => e.getAttribute('src'))")) == before
    p.phone.click("#tab-btn-review")
    p.phone.select_option("#review-class", "diet")
    expect(p.phone.locator(".tile")).to_have_count(8)
    p.shot("review")


def train(p: Pages) -> str:
    d = p.desk
    d.click("#tab-btn-train")
    p.phone.click("#tab-btn-train")
    d.click("#train-btn")
    expect(d.locator("#train-step")).to_contain_text("training")  # progress, on both pages
    expect(p.phone.locator("#train-job")).to_be_visible()
    expect(d.locator("#train-step")).to_contain_text("done", timeout=240_000)
    steps = d.text_content("#train-steps")
    assert steps.endswith("embedding → fitting the head → auditing the training photos → writing the model → "
                          "writing the report"), steps
    model = d.locator(".model").first.get_attribute("data-model")
    expect(d.locator(".model .acc").first).to_contain_text("val accuracy")
    for page in (d, p.phone):  # the report's summary on the card: recall per class, mistakes, the audit
        m = page.locator(f'.model[data-model="{model}"]')
        expect(m.locator(".recall-row")).to_have_count(2)
        expect(m.locator(".mistakes")).not_to_be_empty()
        expect(m.locator(".card-warnings")).to_contain_text("'diet': 100% stored sideways (tag 6); 'zero': 0%")
    expect(p.phone.locator(f'.model[data-model="{model}"]')).to_be_visible()
    d.locator(".model").first.get_by_role("button", name="Per class, confusion matrix, worst mistakes, audit warnings").click()
    expect(d.frame_locator("#report").locator("body")).to_contain_text("confusion", ignore_case=True)
    p.shot("train")
    return model


def try_the_model(p: Pages, model: str) -> None:
    ph = p.phone
    ph.click("#tab-btn-test")
    frame = ph.frame_locator("#test-frame")
    expect(frame.locator("#model-info")).to_contain_text(model)
    frame.locator("#file").set_input_files(jpegs(0, 1, start=300))
    expect(frame.locator("#predictions li").first).to_contain_text("diet")
    frame.locator("#turn-btn").click()
    expect(frame.locator("#turn-verdict")).not_to_be_empty()
    expect(frame.locator("#turns figure")).to_have_count(4)
    frame.locator("#camera-btn").click()  # the live camera, in the frame (fake device)
    expect(frame.locator("#live-figure")).to_be_visible()
    frame.locator("#camera-stop").click()
    p.desk.click("#tab-btn-test")
    expect(p.desk.frame_locator("#test-frame").locator("#model-info")).to_contain_text(model)
    p.shot("test")


def export(p: Pages, model: str) -> None:
    d = p.desk
    d.click("#tab-btn-train")
    with d.expect_download(timeout=240_000) as info:
        d.locator(f'.model[data-model="{model}"] .export-btn[data-format="onnx"]').click()
    path = Path(info.value.path())
    assert info.value.suggested_filename.endswith(".onnx") and path.stat().st_size > 1_000_000
    expect(d.locator(f'.model[data-model="{model}"] .export-status')).to_contain_text("downloaded")
    try:
        import litert_torch  # noqa: F401
    except ImportError:  # the converter is missing here: the page says so
        d.locator(f'.model[data-model="{model}"] .export-btn[data-format="tflite"]').click()
        expect(d.locator(f'.model[data-model="{model}"] .export-status')).to_contain_text("litert-torch")


def test_two_phones_collect_review_train_test_and_export(browser, tmp_path):
    from upright.studio import create_app

    shots = Path(os.environ.get("UPRIGHT_STUDIO_SHOTS") or tmp_path / "shots")
    app = create_app(tmp_path / "cans")
    with LiveServer(app, timeout_graceful_shutdown=2) as live:
        p = Pages(browser, live.url, shots)
        collect(p)
        review(p)
        model = train(p)
        try_the_model(p, model)
        export(p, model)
        time.sleep(0.3)
        p.close()
        expected = "status of 501"  # the TFLite converter is missing here, and the page said so
        assert not [e for e in p.errors if expected not in e], p.errors
