"""The web page in a real browser: Debian's Chromium, headless, driven by Playwright.

The page is served in-process on a free port on 127.0.0.1. A photo uploaded through the
page must come back as exactly what `run_video.py photo -o out.png` writes; a short clip
must come back as a downloadable video with every frame and its audio; a too-long clip must
be refused with the limit named; the webcam (Chromium's synthetic camera) must stream
stylised frames while frames that arrive during a model run are dropped, not queued.
Every wait is bounded.
"""
from __future__ import annotations

import dataclasses
import re
import time

import cv2
import numpy as np
import pytest

from web.harness import (CHROMIUM_ARGS, FAKE_CAMERA_ARGS, chromium_path, free_port, require_web,
                         run_cli, shared_service)
from web.media import make_clip, probe

WAIT_MS = 120_000  # one model run on a slow CPU, with room to spare


@pytest.fixture(scope="module")
def server(models_dir):
    require_web()
    from streamer.web import app as web_app

    service = shared_service(models_dir)
    demo = web_app.build_app(service, stream_every=0.1)
    port = free_port()
    web_app.launch(demo, service, host="127.0.0.1", port=port, block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", service
    finally:
        demo.close()


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True,
                              args=CHROMIUM_ARGS + FAKE_CAMERA_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True,
                              permissions=["camera"])
    ctx.set_default_timeout(WAIT_MS)
    pg = ctx.new_page()
    pg.goto(server[0], timeout=WAIT_MS)
    pg.wait_for_selector("#photo-in", timeout=WAIT_MS)
    try:
        yield pg
    finally:
        ctx.close()


def _download(page, link_selector: str, dst):
    with page.expect_download(timeout=WAIT_MS) as info:
        page.locator(link_selector).first.click()
    info.value.save_as(dst)
    return dst


def test_photo_equals_the_command_line(page, server, models_dir, media_dir, tmp_path):
    src = media_dir / "luciano.png"
    cli = cv2.imread(str(run_cli(models_dir, src, tmp_path / "cli.png", "3d")))

    # every installed style has a preview; clicking one picks it
    service = server[1]
    previews = page.locator("#style-previews button.thumbnail-item img")
    assert sorted(previews.evaluate_all("els => els.map(e => e.alt)")) == sorted(service.styles)
    page.locator('#style-previews button.thumbnail-item:has(img[alt="3d"])').click()
    page.wait_for_selector('#style input[type=radio][value="3d"]:checked', timeout=10_000)

    page.locator("#photo-in input[type=file]").set_input_files(str(src))
    page.wait_for_selector("#photo-in img", timeout=WAIT_MS)
    page.click("#photo-run")
    page.wait_for_selector("#photo-out img", timeout=WAIT_MS)
    page.wait_for_selector("#photo-file a[download]", timeout=WAIT_MS)

    # the result shown beside the input, and the file offered for download
    shown = page.request.get(page.locator("#photo-out img").get_attribute("src"))
    assert shown.ok
    shown_img = cv2.imdecode(np.frombuffer(shown.body(), np.uint8), cv2.IMREAD_COLOR)
    downloaded = cv2.imread(str(_download(page, "#photo-file a[download]", tmp_path / "web.png")))
    for img in (shown_img, downloaded):
        assert img is not None and img.shape == cli.shape
        assert int(np.abs(img.astype(np.int16) - cli).max()) <= 1


def test_video_downloads_with_every_frame_and_audio(page, tmp_path):
    clip = tmp_path / "clip.mp4"
    frames = make_clip(clip, seconds=1.0, fps=10, size=(160, 128))
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-in input[type=file]").set_input_files(str(clip))
    page.wait_for_selector("#video-in video", timeout=WAIT_MS)
    # remember every progress line the page shows (it may come and go quickly)
    page.evaluate("""() => {
        window.__progress = [];
        new MutationObserver(() => {
            for (const el of document.querySelectorAll('.progress-text, .progress-level-inner')) {
                const t = el.textContent.trim();
                if (t && !window.__progress.includes(t)) window.__progress.push(t);
            }
        }).observe(document.body, {subtree: true, childList: true, characterData: true});
    }""")
    page.click("#video-run")
    page.wait_for_selector("#video-file a[download]", timeout=WAIT_MS)
    page.wait_for_selector("#video-out video", timeout=WAIT_MS)
    out = _download(page, "#video-file a[download]", tmp_path / "web.mp4")
    assert probe(out) == (frames, 160, 128, 1)
    shown = page.evaluate("window.__progress")
    assert any(re.search(rf"starting|\d+/{frames} frames", t) for t in shown), shown


def test_too_long_video_is_refused_with_the_limit(page, server, tmp_path):
    service = server[1]
    clip = tmp_path / "clip.mp4"
    make_clip(clip, seconds=1.0, fps=10, size=(64, 48), audio=False)
    old = service.limits
    service.limits = dataclasses.replace(old, max_video_seconds=0.5)
    try:
        page.get_by_role("tab", name="Video").click()
        page.locator("#video-in input[type=file]").set_input_files(str(clip))
        page.wait_for_selector("#video-in video", timeout=WAIT_MS)
        page.click("#video-run")
        page.get_by_text(re.compile(r"this server converts videos up to 0\.5 s")).first.wait_for(
            timeout=WAIT_MS)
    finally:
        service.limits = old
    assert page.locator("#video-file a[download]").count() == 0


def test_webcam_streams_and_drops_frames(page, server, monkeypatch):
    service = server[1]
    calls: list[float] = []
    real = service.webcam

    def counting(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(time.monotonic())
        return out

    monkeypatch.setattr(service, "webcam", counting)
    page.get_by_role("tab", name="Webcam").click()
    page.locator("#cam-in").get_by_text("Click to Access Webcam").click()
    page.locator("#cam-in button.capture-button").click()
    page.wait_for_selector("#cam-out img[src]", timeout=WAIT_MS)

    # frames keep coming: the picture changes (Chromium's fake camera animates)
    seen = {page.locator("#cam-out img").first.get_attribute("src")}
    deadline = time.monotonic() + 60
    while len(seen) < 3:
        assert time.monotonic() < deadline, f"the stylised picture changed {len(seen) - 1} times in 60 s"
        time.sleep(0.2)
        seen.add(page.locator("#cam-out img").first.get_attribute("src"))
    n0, t0 = len(calls), time.monotonic()
    time.sleep(3.0)
    n1, t1 = len(calls), time.monotonic()
    assert n1 > n0, "no frame stylised in 3 s"
    model_s = (t1 - t0) / (n1 - n0)
    sent = (t1 - t0) / 0.1  # the browser sends a frame every 0.1 s
    # Stop. Frames are dropped, not queued: at most the frame in flight and the one in the
    # latest-frame slot are still stylised (a queue would hold ~sent - stylised frames).
    page.locator("#cam-in button.capture-button").click()
    time.sleep(max(3.0, 4 * model_s))
    after = len(calls) - n1
    assert after <= 3, (f"{after} frames stylised after stop ({n1 - n0} in 3 s while "
                        f"~{sent:.0f} were sent)")


def test_upload_over_the_size_limit_is_refused(browser, models_dir, media_dir):
    require_web()
    from streamer.web import app as web_app

    service = shared_service(models_dir)
    old = service.limits
    service.limits = dataclasses.replace(old, max_file_size="100kb")
    try:
        demo = web_app.build_app(service)
        port = free_port()
        web_app.launch(demo, service, host="127.0.0.1", port=port, block=False, quiet=True)
    finally:
        service.limits = old
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.goto(f"http://127.0.0.1:{port}/", timeout=WAIT_MS)
        page.wait_for_selector("#photo-in", timeout=WAIT_MS)
        page.locator("#photo-in input[type=file]").set_input_files(str(media_dir / "luciano.png"))
        page.get_by_text(re.compile(r"exceed the maximum allowed size of 100")).first.wait_for(
            timeout=WAIT_MS)
        assert page.locator("#photo-in img").count() == 0
    finally:
        ctx.close()
        demo.close()


def test_background_choice_gives_a_png_with_alpha(page, media_dir, tmp_path):
    # the page offers every --background choice; transparent gives a PNG with alpha
    values = page.locator("#background input[type=radio]").evaluate_all(
        "els => els.map(e => e.value)")
    assert values == ["keep", "transparent", "blur", "color", "image"]
    page.locator('#background input[type=radio][value="transparent"]').check()
    page.locator("#photo-in input[type=file]").set_input_files(str(media_dir / "luciano.png"))
    page.wait_for_selector("#photo-in img", timeout=WAIT_MS)
    page.click("#photo-run")
    page.wait_for_selector("#photo-file a[download]", timeout=WAIT_MS)
    got = cv2.imread(str(_download(page, "#photo-file a[download]", tmp_path / "web.png")),
                     cv2.IMREAD_UNCHANGED)
    assert got is not None and got.shape == (400, 400, 4)
    alpha = got[..., 3]
    assert (alpha < 10).mean() > 0.2 and (alpha > 245).mean() > 0.3  # room and person

    # shown over a checkerboard where it is transparent (it was shown on white); the
    # picture's top corners are room
    shot = cv2.imdecode(np.frombuffer(page.locator("#photo-out img").first.screenshot(),
                                      np.uint8), cv2.IMREAD_COLOR)
    assert got[:40, :40, 3].max() < 10 and got[:40, -40:, 3].max() < 10
    for corner in (shot[:36, :36], shot[:36, -36:]):
        levels = corner.reshape(-1, 3).mean(axis=1)
        light, dark = np.abs(levels - 204) <= 3, np.abs(levels - 153) <= 3
        assert (light | dark).mean() > 0.95 and light.mean() > 0.2 and dark.mean() > 0.2


def test_background_colour_and_image_show_only_for_their_choice(page):
    def shown() -> tuple[bool, bool]:
        return (page.locator("#background-color").is_visible(),
                page.locator("#background-image").is_visible())

    assert shown() == (False, False)  # keep, the default
    for choice, want in (("color", (True, False)), ("image", (False, True)),
                         ("blur", (False, False)), ("color", (True, False)),
                         ("transparent", (False, False))):
        page.locator(f'#background input[type=radio][value="{choice}"]').check()
        deadline = time.monotonic() + 10
        while shown() != want:
            assert time.monotonic() < deadline, (choice, shown())
            time.sleep(0.1)


def test_a_background_image_that_is_not_an_image_is_one_line_on_the_page(page, media_dir,
                                                                          tmp_path, capfd):
    # it was Gradio's "Could not preprocess input component at index 5 ...
    # UnidentifiedImageError", with tracebacks in the server log
    room = tmp_path / "room.png"
    room.write_text("not a picture")
    page.locator('#background input[type=radio][value="image"]').check()
    page.locator("#background-image input[type=file]").set_input_files(str(room))
    page.locator("#photo-in input[type=file]").set_input_files(str(media_dir / "luciano.png"))
    page.wait_for_selector("#photo-in img", timeout=WAIT_MS)
    capfd.readouterr()
    page.click("#photo-run")
    page.get_by_text(re.compile(r"The background image room\.png cannot be read as an "
                                r"image")).first.wait_for(timeout=WAIT_MS)
    text = page.locator("body").inner_text()
    assert "preprocess" not in text and "UnidentifiedImageError" not in text
    assert page.locator("#photo-file a[download]").count() == 0
    _, err = capfd.readouterr()
    assert "Traceback" not in err and "UnidentifiedImageError" not in err, err
