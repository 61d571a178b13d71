"""`vstar ui` as a person uses it, in a real headless browser (Debian's chromium driven by playwright).

The page is served by ``vstar ui --model toy-shapes`` in a subprocess (see conftest.py). Set
``VSTAR_UI_SCREENSHOT=docs/ui.png`` to refresh the README's screenshot from the first test.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

PROMPT = "a red circle on a black background turning into a blue square"
EDITED_STATE = "A green triangle on a black background"
GENERATION_S = 90_000  # ms a generation may take in the page (toy-shapes, 8 frames, a few steps: seconds)


def open_page(browser: Any, url: str) -> Any:
    """A new visitor (own browser context and Gradio session) on the page, once it has rendered."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#prompt textarea", timeout=30_000)
    return page


def set_field(page: Any, elem_id: str, value: str) -> None:
    """Type ``value`` into a text or number field and leave it, as a person would."""
    field = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    field.fill(value)
    field.press("Tab")


def choose(page: Any, elem_id: str, value: str) -> None:
    """Pick ``value`` in a dropdown."""
    page.click(f"#{elem_id} input")
    page.fill(f"#{elem_id} input", value)
    page.keyboard.press("Enter")


def short_generation(page: Any, steps: int = 3) -> None:
    """A prompt with its own state, and a short video (8 frames, ``steps`` steps)."""
    set_field(page, "prompt", PROMPT)
    set_field(page, "states", "A red circle on a black background\nA blue square on a black background")
    choose(page, "frames", "8")
    page.click("button:has-text('Advanced')")
    set_field(page, "steps", str(steps))


def wait_for_video(page: Any) -> dict[str, float]:
    """Wait for the generated video to load in the page; its readyState, duration and playback position."""
    page.wait_for_selector("#video video", timeout=GENERATION_S)
    page.wait_for_function("document.querySelector('#video video').readyState >= 2", timeout=30_000)
    return page.evaluate("(() => { const v = document.querySelector('#video video');"
                         " return {ready: v.readyState, duration: v.duration, time: v.currentTime}; })()")


def test_a_visitor_suggests_edits_generates_plays_and_downloads_the_sidecar(browser, ui_url, tmp_path):
    page = open_page(browser, ui_url)
    page.fill("#prompt textarea", PROMPT)
    page.click("#suggest")
    page.wait_for_function("document.querySelector('#states textarea').value.includes('blue square')",
                           timeout=30_000)
    states = page.input_value("#states textarea").splitlines()
    assert len(states) == 3, states  # the offline rules: start, transition, end
    states[-1] = EDITED_STATE
    set_field(page, "states", "\n".join(states))
    choose(page, "frames", "8")
    page.click("button:has-text('Advanced')")
    set_field(page, "steps", "4")
    page.click("#generate")

    video = wait_for_video(page)
    assert video["duration"] > 0
    page.wait_for_function(f"document.querySelector('#video video').currentTime != {video['time']}",
                           timeout=10_000)  # it plays (autoplay, looped)
    assert EDITED_STATE in page.inner_text("#synopsis")
    with page.expect_download() as download:
        page.click("#download-sidecar")
    sidecar = json.loads(Path(download.value.path()).read_text())
    assert sidecar["synopsis"] == states
    assert sidecar["synopsis_source"] == "manual"  # edited, so no longer the rules' suggestion
    assert sidecar["model"] == "toy-shapes" and sidecar["settings"]["num_frames"] == 8
    assert sidecar["command"] == "vstar ui"

    screenshot = Path(os.environ.get("VSTAR_UI_SCREENSHOT") or tmp_path / "ui.png")
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000

    page.click("button[role='tab']:has-text('Temporal attention')")
    page.wait_for_selector("#attention img", timeout=10_000)
    assert "dynamic degree" in page.input_value("#metrics textarea")
    page.context.close()


def test_a_second_visitor_waits_in_the_queue_and_gets_its_video_too(browser, ui_url):
    first, second = open_page(browser, ui_url), open_page(browser, ui_url)
    short_generation(first, steps=40)  # long enough for the second visitor to queue behind it
    short_generation(second)
    first.click("#generate")
    first.wait_for_selector("#video .progress-text, #video .meta-text", timeout=30_000)  # the first one runs
    second.click("#generate")
    second.wait_for_function("/queue: *\\d+\\/\\d+/.test(document.querySelector('#video').innerText)",
                             timeout=30_000)
    assert wait_for_video(first)["duration"] > 0
    assert wait_for_video(second)["duration"] > 0
    first.context.close()
    second.context.close()


def test_a_bad_input_shows_its_one_line_message_and_no_traceback(browser, ui_url):
    page = open_page(browser, ui_url)
    short_generation(page)
    set_field(page, "height", "33")
    page.click("#generate")
    toast = page.wait_for_selector(".toast-body", timeout=30_000)
    assert "height must be a positive multiple of 16 for this model, got 33; try 32" in toast.inner_text()
    assert "Traceback" not in page.inner_text("body")
    page.context.close()


def test_a_sidecar_loaded_into_the_page_restores_its_settings(browser, ui_url, tmp_path):
    sidecar = tmp_path / "clip.json"
    sidecar.write_text(json.dumps({
        "vstar_version": "0.3.0", "kind": "generation", "prompt": "a bouncing ball", "model": "toy-shapes",
        "synopsis": ["a red ball high", "a red ball low"], "upscale": 4,
        "settings": {"num_frames": 12, "num_inference_steps": 7, "seed": 1234, "tar": "64D2",
                     "interpolation": "slerp", "guidance_scale": 4.5},
    }))
    page = open_page(browser, ui_url)
    page.set_input_files("#load-sidecar input[type=file]", str(sidecar))
    page.wait_for_function("document.querySelector('#prompt textarea').value === 'a bouncing ball'", timeout=20_000)
    page.click("button:has-text('Advanced')")
    assert page.input_value("#states textarea") == "a red ball high\na red ball low"
    assert page.input_value("#frames input") == "12"
    assert page.input_value("#tar input") == "64D2"
    assert page.input_value("#steps input") == "7"
    assert page.input_value("#guidance input") == "4.5"
    assert page.input_value("#seed input") == "1234"
    assert page.input_value("#upscale input") == "4"
    assert not page.is_checked("#random-seed input")
    assert page.is_checked("input[type=radio][value=slerp]")
    assert re.search(r"\d", page.input_value("#width input"))  # the model's default, filled in
    page.context.close()
