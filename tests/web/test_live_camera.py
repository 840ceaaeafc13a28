"""The style tab's live camera mode in headless Chromium with Chromium's fake camera.

``--use-fake-device-for-media-stream`` gives getUserMedia a generated moving picture (Chromium's
test pattern) and ``--use-fake-ui-for-media-stream`` grants the permission without a prompt, so
the page's real path runs: camera -> working size -> onnxruntime-web (WASM) -> canvas. Skipped,
like the other browser tests, without Chromium, Playwright or onnxruntime-web.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.web.conftest import CHROMIUM_FLAGS, MISSING, PageWatch, chromium_path
from tests.web.test_page import canvas_pixels, open_page, same_origin_only

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
#: Enough painted frames for the rate to be a median of something.
FRAMES = 12

# Keeps every stream the page gets, so the test can see whether stopping ended its tracks.
RECORD_STREAMS = """
const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
window.cameraStreams = [];
navigator.mediaDevices.getUserMedia = async (constraints) => {
    const stream = await original(constraints);
    window.cameraStreams.push(stream);
    return stream;
};
"""


@pytest.fixture(scope="module")
def camera_browser():
    if MISSING:
        pytest.skip(MISSING)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS + FAKE_CAMERA)
        yield chromium
        chromium.close()


@pytest.fixture
def camera_page(camera_browser, server):
    context = camera_browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["camera"])
    tab = context.new_page()
    tab.watch = PageWatch(tab)
    tab.set_default_timeout(90_000)
    yield tab
    context.close()


def live_state(page) -> str:
    return page.eval_on_selector("#live", "section => section.dataset.state")


def test_live_camera_paints_shows_its_rate_and_releases_the_camera(camera_page, server, artifacts):
    page = camera_page
    page.add_init_script(RECORD_STREAMS)
    open_page(page, server)
    page.click("#live-start")
    page.wait_for_function(f"""() => {{
        const section = document.querySelector('#live');
        return section.dataset.state === 'error' || Number(section.dataset.frames || 0) >= {FRAMES};
    }}""")
    assert live_state(page) == "running", page.inner_text("#live-error")
    rate, detail = page.inner_text("#live-rate"), page.inner_text("#live-detail")
    fps = float(page.eval_on_selector("#live", "section => section.dataset.fps"))
    print(f"\nlive camera (Chromium's fake camera, 320 px painting, sharp edges): {rate}; {detail}")
    assert fps > 0 and "frames/s" in rate and "median" in rate
    assert "painting" in detail and "wasm" in detail

    # Sharp edges (the default): the 320x180 painting is shown at 640x360 along the camera's edges.
    painted = canvas_pixels(page, "#live-canvas")
    assert painted.shape[:2] == (360, 640) and painted.std() > 10, "the live canvas is blank"
    assert "along the camera's edges" in detail
    page.screenshot(path=artifacts / "style-live-camera.png", full_page=True)
    page.uncheck("#live-sharp")  # the small painting itself, zoomed by the browser
    page.wait_for_function("document.querySelector('#live-canvas').width === 320")

    page.click("#live-stop")
    assert live_state(page) == "stopped"
    tracks = page.evaluate("window.cameraStreams.flatMap((s) => s.getTracks()).map((t) => t.readyState)")
    assert tracks and set(tracks) == {"ended"}, f"the camera is still in use: {tracks}"
    assert page.evaluate("document.querySelector('#live-video').srcObject") is None
    assert "released" in page.inner_text("#live-status")
    frames = int(page.eval_on_selector("#live", "section => section.dataset.frames"))
    page.wait_for_timeout(500)  # no painting after stop
    assert int(page.eval_on_selector("#live", "section => section.dataset.frames")) == frames
    assert page.watch.errors == []
    same_origin_only(page, server)


@pytest.mark.parametrize(("failure", "message"), [("NotAllowedError", "camera access was denied"),
                                                  ("NotFoundError", "no camera found")])
def test_a_denied_or_missing_camera_is_said_clearly(camera_page, server, failure, message):
    page = camera_page
    page.add_init_script(f"""navigator.mediaDevices.getUserMedia = async () => {{
        throw new DOMException('refused by the test', '{failure}');
    }};""")
    open_page(page, server)
    page.click("#live-start")
    page.wait_for_function("document.querySelector('#live').dataset.state === 'error'")
    assert message in page.inner_text("#live-error")
    assert page.is_enabled("#live-start") and not page.is_enabled("#live-stop")


def test_without_webassembly_the_live_camera_says_it_cannot_paint(camera_page, server):
    """The photo falls back to the server; the camera does not (a round trip per frame is not live)."""
    page = camera_page
    page.add_init_script("delete globalThis.WebAssembly;")
    open_page(page, server)
    page.click("#live-start")
    page.wait_for_function("document.querySelector('#live').dataset.state === 'error'")
    assert "cannot run the model" in page.inner_text("#live-error")


def test_leaving_the_tab_turns_the_camera_off(camera_page, server):
    page = camera_page
    page.add_init_script(RECORD_STREAMS)
    open_page(page, server)
    page.click("#live-start")
    page.wait_for_function("Number(document.querySelector('#live').dataset.frames || 0) >= 1")
    page.click("#tab-gan")
    assert live_state(page) == "stopped"
    tracks = page.evaluate("window.cameraStreams.flatMap((s) => s.getTracks()).map((t) => t.readyState)")
    assert tracks and set(tracks) == {"ended"}


def test_the_pages_guided_upsampling_matches_the_cli(camera_page, server):
    """guided.js is slimvision.inference.guided.upsample_residual, rounded like to_uint8."""
    from slimvision.inference.guided import resize_area, upsample_residual

    page = camera_page
    open_page(page, server)
    rng = np.random.default_rng(5)
    for (height, width), (small_h, small_w) in [((90, 160), (23, 40)), ((120, 100), (60, 50))]:
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        frame[:, width // 2:] //= 3  # an edge for the guide to keep
        small = resize_area(frame, small_h, small_w)
        painted = np.clip(small + rng.integers(-60, 60, small.shape), 0, 255).astype(np.uint8)
        expected = upsample_residual(frame / np.float32(255), small / np.float32(255), painted / np.float32(255))
        expected = np.floor(expected * 255 + 0.5).astype(np.uint8)
        rgba = [base64.b64encode(np.dstack([image, np.full(image.shape[:2], 255, np.uint8)]).tobytes()).decode()
                for image in (frame, small, painted)]
        got = page.evaluate("""async ([frame, small, painted, width, height, smallW, smallH]) => {
            const { upsampleResidual } = await import('/static/guided.js');
            const bytes = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
            const out = upsampleResidual(bytes(frame), width, height, bytes(small), bytes(painted), smallW, smallH);
            let text = '';
            for (let i = 0; i < out.length; i += 8192) text += String.fromCharCode(...out.subarray(i, i + 8192));
            return btoa(text);
        }""", [*rgba, width, height, small_w, small_h])
        got = np.frombuffer(base64.b64decode(got), np.uint8).reshape(height, width, 4)[..., :3]
        assert np.abs(got.astype(int) - expected).max() <= 1


def test_the_camera_starts_again_after_a_stop(camera_page, server):
    page = camera_page
    page.add_init_script(RECORD_STREAMS)
    open_page(page, server)
    for _ in range(2):
        page.click("#live-start")
        page.wait_for_function("""() => {
            const section = document.querySelector('#live');
            return section.dataset.state === 'running' && Number(section.dataset.frames || 0) >= 2;
        }""")
        page.click("#live-stop")
        assert live_state(page) == "stopped"
        page.eval_on_selector("#live", "section => { section.dataset.frames = '0'; }")
    tracks = page.evaluate("window.cameraStreams.map((s) => s.getTracks().every((t) => t.readyState === 'ended'))")
    assert tracks == [True, True]
