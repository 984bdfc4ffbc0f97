"""The page in a real browser: Debian's Chromium driven by Playwright (the system browser as
executable_path; `make test` installs it with scripts/browser.sh). Drop a tampered copy, see
the TAMPERED badge and the heat map; copy the record id; register through the form with a
token; the page fits a phone's width. Screenshots are kept as test artifacts."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright
from tests.conftest import ROOT, jpeg_bytes, png_bytes

from blockimage.evaluation import tampered_variant

CHROMIUM = os.environ.get("BLOCKIMAGE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("BLOCKIMAGE_TEST_ARTIFACTS", ROOT / ".cache" / "test-artifacts"))
# What the closed network here needs (no background requests, no sandbox as root).
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync",
    "--disable-component-update", "--no-first-run", "--disable-quic",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `scripts/browser.sh install`"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(server.url + "/")
    page.problems = problems  # a test that expects an error status removes its line
    yield page
    context.close()
    assert problems == []  # no script error, no resource the policy blocked


def drop(page, selector: str, data: bytes, name: str, mime: str) -> None:
    """Drop a file on an element the way a user's drag and drop does (a DataTransfer)."""
    transfer = page.evaluate_handle(
        """([b64, name, mime]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const t = new DataTransfer();
            t.items.add(new File([bytes], name, {type: mime}));
            return t;
        }""",
        [base64.b64encode(data).decode(), name, mime],
    )
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_dropping_a_tampered_copy_shows_the_badge_heat_map_and_record(page, server):
    stored = httpx.get(f"{server.url}/api/ipfs/{server.receipt.record.cid}").content
    marked = np.asarray(Image.open(io.BytesIO(stored)).convert("RGB"))
    edit = tampered_variant(marked, "copy-move", np.random.default_rng(11), resave=False)
    drop(page, "#drop", png_bytes(edit.pixels), "edited.png", "image/png")
    badge = page.wait_for_selector(".verdict", timeout=60_000)
    assert badge.inner_text() == "TAMPERED"
    assert "verdict-tampered" in badge.get_attribute("class")
    figures = page.locator("#result figure img")
    assert figures.count() == 3  # the suspect, the stored original, the heat map with boxes
    assert "Differences" in page.locator("#result figcaption").nth(2).inner_text()
    assert all(figures.nth(i).evaluate("img => img.naturalWidth > 0") for i in range(3))
    assert page.locator("#result ol.timeline li").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "page-tampered.png"), full_page=True)
    # the record id is copyable
    record_id = server.receipt.record.record_id
    page.locator(f'#result button.copy[data-copy="{record_id}"]').click()
    assert page.evaluate("navigator.clipboard.readText()") == record_id
    # at a phone's width nothing is wider than the screen
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "page-tampered-phone.png"), full_page=False)


def test_an_owner_registers_through_the_form_with_a_token(page, server, photos):
    before = httpx.get(server.url + "/healthz").json()["records"]
    image = ARTIFACTS / "form-upload.jpg"
    pixels = np.asarray(Image.open(photos["chelsea"]).convert("RGB"))
    image.write_bytes(jpeg_bytes(np.ascontiguousarray(pixels[::-1]), 90))  # a new picture
    page.get_by_text("Register an image").click()
    page.get_by_label("Owner name").fill("alice")
    page.get_by_label("Token").fill(server.tokens["alice"])
    page.get_by_label("Image", exact=True).set_input_files(str(image))
    page.get_by_role("button", name="Register").click()
    page.wait_for_selector(".receipt", timeout=60_000)
    text = page.locator(".receipt").inner_text()
    assert "Registered as record" in text
    assert httpx.get(server.url + "/healthz").json()["records"] == before + 1
    page.screenshot(path=str(ARTIFACTS / "page-registered.png"), full_page=True)
    # a wrong token is refused on the page, in words
    page.get_by_label("Token").fill("not-a-token")
    page.get_by_label("Image", exact=True).set_input_files(str(image))
    page.get_by_role("button", name="Register").click()
    assert "Not registered" in page.wait_for_selector(".error", timeout=30_000).inner_text()
    assert page.problems == [
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ]  # the page's own status says it was refused
    page.problems.clear()


def test_the_page_is_usable_with_the_keyboard_and_labelled(page):
    for control in page.locator("input").all():
        name = control.get_attribute("id")
        assert page.locator(f'label[for="{name}"]').count() == 1, name
    page.evaluate(
        "document.getElementById('verify-file').addEventListener('click', () => window.opened++)"
    )
    page.evaluate("window.opened = 0")
    page.keyboard.press("Tab")  # the drop zone is the first stop, and opens the file picker
    assert page.evaluate("document.activeElement.id") == "drop"
    page.keyboard.press("Enter")
    page.keyboard.press(" ")
    assert page.evaluate("window.opened") == 2
    with page.expect_file_chooser() as chooser:
        page.locator("#drop").click()
    assert chooser.value.element.get_attribute("id") == "verify-file"
