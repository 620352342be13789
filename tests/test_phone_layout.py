"""Phone-first, in a real browser (Debian chromium through Playwright; issue 25): at 390 px the web
app and the audit, train and eval reports are no wider than the screen (wide tables scroll inside
their own box; the audit's heat map becomes a table of words), the page offers only what a phone
can do (no "drop" or "Ctrl+V"), the stored-as thumbnail stays a thumbnail, and a bad upload says
which file and why, once, without leaving the previous photo's answer under it. Skips without
chromium unless UPRIGHT_REQUIRE_BROWSER=1 (CI)."""

from __future__ import annotations

import pytest

from fixtures import class_picture, encode, make_dataset, stripes_picture, write_photo

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1366, "height": 900}}
WIDTH_JS = "document.documentElement.scrollWidth"
# Boxes whose content is wider than they are, i.e. that scroll sideways on their own.
SCROLLING_JS = "Array.from(document.querySelectorAll('.scroll')).filter(e => e.scrollWidth > e.clientWidth).length"


def expect(locator):
    from playwright.sync_api import expect as _expect

    return _expect(locator)


@pytest.fixture(scope="module")
def server(stripes_model_dir):
    from fixtures import LiveServer
    from upright.model import load_model
    from upright.serve import create_app

    with LiveServer(create_app(load_model(stripes_model_dir), model_name="stripes")) as live:
        yield live


def upload(page, name: str, data: bytes, mime: str = "image/jpeg"):
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": data}])


def test_phone_page_fits_and_offers_only_what_a_phone_can_do(browser, server):
    ctx = browser.new_context(**PHONE)
    page = ctx.new_page()
    page.goto(server.url + "/")
    assert page.is_hidden(".drop-text") and page.is_visible("label[for=file]")  # the buttons say it all
    assert "Ctrl+V" not in page.inner_text("#drop") and "Drop a photo" not in page.inner_text("#drop")
    upload(page, "sideways.jpg", encode(stripes_picture("vertical", 310, 320, 240), "JPEG", 6))
    expect(page.locator("#filename")).to_have_text("sideways.jpg")
    assert page.is_visible("#stored-figure")
    thumb = page.eval_on_selector("#stored", "e => e.getBoundingClientRect().toJSON()")
    view = page.eval_on_selector("#view", "e => e.getBoundingClientRect().toJSON()")
    assert thumb["height"] <= 120 and thumb["width"] < view["width"] / 2, (thumb, view)  # a thumbnail
    assert page.evaluate(WIDTH_JS) <= 390
    ctx.close()

    ctx = browser.new_context(**DESKTOP)  # a mouse and a keyboard: dropping and pasting apply
    page = ctx.new_page()
    page.goto(server.url + "/")
    assert page.is_visible(".drop-text") and "Ctrl+V" in page.inner_text("#drop")
    ctx.close()


@pytest.mark.parametrize("device", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_bad_upload_names_the_file_once_and_clears_the_old_answer(browser, server, device):
    ctx = browser.new_context(**device)
    page = ctx.new_page()
    page.goto(server.url + "/")
    upload(page, "good.jpg", encode(stripes_picture("vertical", 311, 320, 240), "JPEG"))
    expect(page.locator("#filename")).to_have_text("good.jpg")
    upload(page, "notes.jpg", b"just some text\n", "image/jpeg")  # text named .jpg
    page.wait_for_selector("#error:not([hidden])")
    message = page.text_content("#error")
    assert message.startswith("notes.jpg — Not an image"), message
    assert message.lower().count("not an image") == 1, message  # the reason once, not "Not an image: not an image"
    assert page.is_hidden("#result"), "the previous photo's answer still shows under the error"
    assert page.evaluate(WIDTH_JS) <= device["viewport"]["width"]
    upload(page, "flat.png", encode(stripes_picture("horizontal", 312), "PNG"), "image/png")
    expect(page.locator("#filename")).to_have_text("flat.png")  # and the page goes on
    assert page.is_hidden("#error") and page.is_visible("#result")
    ctx.close()


@pytest.mark.slow
def test_reports_fit_a_phone_tables_scroll_in_their_box(browser, stripes_model_dir, tmp_path):
    from upright.audit import run_audit
    from upright.audit.report import write_report as write_audit_report
    from upright.evaluate import evaluate

    data = make_dataset(tmp_path / "data", 8, ("cat", "dog", "owl"), orientation={"dog": 6})
    audit = write_audit_report(run_audit(data, content=False, progress=False), tmp_path / "audit.html", data=data)
    evaluate(stripes_model_dir, stripes_model_dir.parent / "data", progress=False, report=tmp_path / "eval.html")
    reports = {"audit": audit, "train": stripes_model_dir / "report.html", "eval": tmp_path / "eval.html"}
    ctx = browser.new_context(**PHONE)
    page = ctx.new_page()
    for name, path in reports.items():
        page.goto(path.resolve().as_uri())
        assert page.evaluate(WIDTH_JS) <= 390, f"the {name} report is {page.evaluate(WIDTH_JS)} px wide at 390"
        if name in ("audit", "train"):  # these have tables wider than a phone: they scroll on their own
            assert page.evaluate(SCROLLING_JS) >= 1, name
    ctx.close()


def test_audit_heat_map_reads_on_a_phone(browser, tmp_path):
    """At 390 px the attribute heat map is a table of words (a shrunk plot's labels are ~4 px):
    cells at least 12 px, the value column stays in view while the classes scroll sideways, the
    named cells marked; at 1366 px the plot itself, shown whole."""
    from upright.audit import run_audit
    from upright.audit.report import write_report

    phones = {"daisy": ("Apple", "iPhone 13", 6), "dandelion": ("samsung", "SM-G991B", 6),
              "roses": ("Google", "Pixel 7", None), "tulips": ("Apple", "iPhone 13", None),
              "sunflowers": ("Google", "Pixel 8", None)}
    for ci, (label, (make, model, tag)) in enumerate(phones.items()):
        for i in range(10):
            write_photo(tmp_path / "d" / label / f"IMG_{i:04d}.jpg", class_picture(ci, i, 64, 48), tag,
                        make=make, model=model)
    path = write_report(run_audit(tmp_path / "d", content=False, progress=False), tmp_path / "audit.html",
                        data=tmp_path / "d")
    ctx = browser.new_context(**PHONE)
    page = ctx.new_page()
    page.goto(path.as_uri())
    assert page.is_hidden("img[alt='attribute by label heat map']") and page.is_visible("table.heat")
    assert page.evaluate(WIDTH_JS) <= 390
    sizes = page.eval_on_selector_all("table.heat td", "cs => cs.map(c => parseFloat(getComputedStyle(c).fontSize))")
    assert sizes and min(sizes) >= 12, sizes
    assert page.locator("table.heat td.mark").count() >= 2  # the cells the camera finding stands on
    box = page.locator("table.heat").locator("xpath=..")
    assert box.evaluate("e => e.scrollWidth > e.clientWidth")  # five classes: it scrolls in its own box
    first = page.locator("table.heat tr:nth-child(3) th")
    before = first.bounding_box()["x"]
    box.evaluate("e => { e.scrollLeft = e.scrollWidth; }")
    assert abs(first.bounding_box()["x"] - before) < 1  # the value column stays put (sticky)
    ctx.close()

    ctx = browser.new_context(**DESKTOP)
    page = ctx.new_page()
    page.goto(path.as_uri())
    assert page.is_visible("img[alt='attribute by label heat map']") and page.is_hidden("table.heat")
    width = page.eval_on_selector("img[alt='attribute by label heat map']", "e => e.getBoundingClientRect().width")
    assert width <= page.eval_on_selector("main", "e => e.clientWidth") and page.evaluate(WIDTH_JS) <= 1366
    ctx.close()
