"""End to end: the page in headless Chromium against a live server.

In-browser style transfer (onnxruntime-web, WASM) must paint what the server paints for the same
inputs (SSIM >= 0.95); each tab is driven once and screenshotted into the artefacts folder.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimvision.metrics import ssim
from tests.web.conftest import ADMIN_TOKEN

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "slimvision" / "samples"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# ----------------------------------------------------------------------- helpers
def save_png(image: np.ndarray | Image.Image, path: Path) -> Path:
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(path)
    return path


def sample(kind: str, name: str, size: tuple[int, int] | None = None) -> Image.Image:
    image = Image.open(SAMPLES / kind / name).convert("RGB")
    return image.resize(size, Image.Resampling.LANCZOS) if size else image


def canvas_pixels(page, selector: str) -> np.ndarray:
    url = page.eval_on_selector(selector, "canvas => canvas.toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def wait_done(page, form: str) -> str:
    """Wait until the form's handler has finished; returns 'done' or 'error'."""
    page.wait_for_function(f"""() => {{
        const form = document.querySelector('{form}');
        return ['done', 'error'].includes(form.dataset.state) && form.getAttribute('aria-busy') === 'false';
    }}""")
    return page.eval_on_selector(form, "form => form.dataset.state")


def submit(page, form: str, button: str = "button.primary") -> str:
    page.eval_on_selector(form, "form => { form.dataset.state = 'submitting'; }")
    page.click(f"{form} {button}")
    return wait_done(page, form)


def set_range(page, selector: str, value: float) -> None:
    page.eval_on_selector(selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", str(value))


def open_page(page, server: str, tab: str = "style") -> None:
    page.goto(f"{server}/#{tab}")
    page.wait_for_selector('#style-form[data-state="ready"]', state="attached")


def server_stylize(server: str, content: Path, styles: list[Path], **form: str) -> np.ndarray:
    import httpx

    files = [("content", (content.name, content.read_bytes(), "image/png"))]
    files += [("style", (path.name, path.read_bytes(), "image/png")) for path in styles]
    response = httpx.post(f"{server}/api/style/stylize", files=files, data=form, timeout=120)
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def same_origin_only(page, server: str) -> None:
    outside = [url for url in page.watch.urls if not url.startswith((server, "data:", "blob:"))]
    assert outside == [], f"the page fetched from elsewhere: {outside}"


# ----------------------------------------------------------------------- style transfer
def test_page_loads_isolated_and_local_only(page, server, artifacts):
    open_page(page, server)
    assert page.evaluate("crossOriginIsolated") is True  # COOP/COEP: WASM threads available
    assert page.locator("#model option").count() == 2
    assert "fast" in page.locator("#model option:checked").inner_text()
    assert "kB" in page.inner_text("#model-note")  # the download size is shown before loading
    same_origin_only(page, server)
    assert page.watch.errors == []


def test_resize_matches_pillow_bit_for_bit(page, server):
    """The predictor's input (centre square, Pillow's antialiased bilinear) is computed in JS."""
    from slimvision.io.pixels import centre_square, to_float

    open_page(page, server)
    rng = np.random.default_rng(3)
    for height, width in [(300, 451), (700, 523), (256, 400), (97, 130)]:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        image[: height // 2] = np.asarray(sample("styles", "starry_night.jpg", (width, height // 2)))
        got = page.evaluate("""async ([encoded, width, height]) => {
            const ops = await import('/static/imageops.js');
            const data = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
            const square = new Uint8Array(ops.centreSquare({data, width, height, channels: 3}, 256).buffer);
            let text = '';
            for (let i = 0; i < square.length; i += 8192) text += String.fromCharCode(...square.subarray(i, i + 8192));
            return btoa(text);
        }""", [base64.b64encode(image.tobytes()).decode(), width, height])
        got = np.frombuffer(base64.b64decode(got), np.float32).reshape(256, 256, 3)
        expected = to_float(centre_square(image, 256))
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("case", ["one style", "two styles, strength 0.7, colours kept", "teacher"])
def test_in_browser_stylization_matches_the_server(page, server, artifacts, tmp_path, case):
    # 402 x 298: not multiples of 4, so the reflect padding and the crop are exercised; under
    # 1024 px, so neither side resizes the content.
    content = save_png(sample("content", "chelsea_cat.jpg", (402, 298)), tmp_path / "cat.png")
    styles = [save_png(sample("styles", "starry_night.jpg"), tmp_path / "starry.png")]
    form = {"strength": "1", "preserve_color": "false"}
    open_page(page, server)
    page.set_input_files("#content-file", str(content))
    page.wait_for_function("document.querySelector('#content-note').textContent.includes('402')")
    page.set_input_files("#style-rows .style-row:nth-child(1) .style-file", str(styles[0]))
    if case != "one style":
        styles.append(save_png(sample("styles", "brick_wall.jpg"), tmp_path / "brick.png"))
        page.click("#add-style")
        page.set_input_files("#style-rows .style-row:nth-child(2) .style-file", str(styles[1]))
        set_range(page, "#style-rows .style-row:nth-child(1) .style-weight", 0.7)
        set_range(page, "#style-rows .style-row:nth-child(2) .style-weight", 0.3)
        set_range(page, "#strength", 0.7)
        page.check("#preserve-color")
        form = {"strength": "0.7", "preserve_color": "true", "weights": "0.7,0.3"}
    if case == "teacher":
        page.select_option("#model", "magenta-arbitrary-v1-fp32")
        form["model"] = "magenta-arbitrary-v1-fp32"

    assert submit(page, "#style-form", "#stylize") == "done", page.inner_text("#style-error")
    assert page.evaluate("document.body.dataset.styleRanOn") == "browser"
    info = page.inner_text("#style-info")
    assert "wasm" in info and "transformer" in info and "model download" in info
    browser = canvas_pixels(page, "#result-canvas")
    assert browser.shape == (298, 402, 3)
    assert browser.std() > 10, "the stylized image is blank"

    expected = server_stylize(server, content, styles, **form)
    score = ssim(expected / 255.0, browser / 255.0)
    diff = np.abs(expected.astype(int) - browser)
    print(f"\n{case}: SSIM browser vs server {score:.5f}; |diff| mean {diff.mean():.4f}, max {diff.max()} (of 255), "
          f"{(diff.max(-1) > 0).mean():.2%} of pixels differ")
    name = case.split(",")[0].replace(" ", "-")
    save_png(np.concatenate([expected, browser], 1), artifacts / f"style-{name}-server-vs-browser.png")
    page.screenshot(path=artifacts / f"tab-style-{name}.png", full_page=True)
    assert score >= 0.95
    # The download button offers the same pixels as a PNG.
    with page.expect_download() as download:
        page.click("#download")
    saved = np.asarray(Image.open(download.value.path()).convert("RGB"))
    np.testing.assert_array_equal(saved, browser)
    assert page.watch.errors == []
    same_origin_only(page, server)


def test_large_photos_are_scaled_down_and_the_page_says_so(page, server, tmp_path):
    from slimvision.inference.style import fitted_size

    big = save_png(sample("content", "rocket.jpg", (1300, 900)), tmp_path / "big.png")
    open_page(page, server)
    page.set_input_files("#content-file", str(big))
    page.wait_for_function("document.querySelector('#content-note').textContent.includes('scaled down')")
    height, width = fitted_size(900, 1300, 1024)
    assert f"to {width}×{height}" in page.inner_text("#content-note")
    assert page.eval_on_selector("#before-canvas", "c => [c.width, c.height]") == [width, height]


def test_falls_back_to_the_server_without_webassembly(page, server, artifacts):
    page.add_init_script("delete globalThis.WebAssembly;")
    open_page(page, server)
    assert submit(page, "#style-form", "#stylize") == "done", page.inner_text("#style-error")
    assert page.evaluate("document.body.dataset.styleRanOn") == "server"
    assert "ran on the server" in page.inner_text("#style-status")
    assert "could not run the model" in page.inner_text("#style-info")
    assert canvas_pixels(page, "#result-canvas").std() > 10
    page.screenshot(path=artifacts / "tab-style-server-fallback.png", full_page=True)


def test_a_failing_webgpu_runtime_falls_back_to_wasm(page, server):
    """Where navigator.gpu offers an adapter the page tries onnxruntime-web's WebGPU build first;
    if that cannot make a session (here: a fake adapter) it paints with the WASM build."""
    page.add_init_script("""Object.defineProperty(navigator, 'gpu', {value: {requestAdapter: async () => ({})}});""")
    open_page(page, server)
    assert submit(page, "#style-form", "#stylize") == "done", page.inner_text("#style-error")
    assert page.evaluate("document.body.dataset.styleRanOn") == "browser"
    assert "wasm" in page.inner_text("#style-info")
    assert any("ort.webgpu.min.mjs" in url for url in page.watch.urls)
    assert canvas_pixels(page, "#result-canvas").std() > 10


def test_server_errors_are_shown(page, server, tmp_path):
    open_page(page, server, "faces")
    blank = save_png(np.full((120, 120, 3), 200, np.uint8), tmp_path / "blank.png")
    page.set_input_files("#verify-a", str(blank))
    page.set_input_files("#verify-b", str(blank))
    assert submit(page, "#verify-form") == "error"
    message = page.inner_text("#verify-form .error")
    assert "no face" in message.lower() and "422" in message


# ----------------------------------------------------------------------- the other tabs
def test_faces_tab_verifies_enrolls_and_identifies(page, server, artifacts, tmp_path):
    photo = SAMPLES / "content" / "astronaut.jpg"
    mirrored = save_png(np.ascontiguousarray(np.asarray(Image.open(photo).convert("RGB"))[:, ::-1]), tmp_path / "m.png")
    open_page(page, server, "faces")
    page.set_input_files("#verify-a", str(photo))
    page.set_input_files("#verify-b", str(mirrored))
    assert submit(page, "#verify-form") == "done", page.inner_text("#verify-form .error")
    assert page.inner_text("#verify-result").startswith("Same person")

    page.fill("#enroll-name", "Eileen")
    page.set_input_files("#enroll-image", str(photo))
    assert submit(page, "#enroll-form") == "error"  # no token given
    assert "admin token" in page.inner_text("#enroll-form .error")
    page.fill("#admin-token", ADMIN_TOKEN)
    assert submit(page, "#enroll-form") == "done", page.inner_text("#enroll-form .error")
    assert "Eileen (1 photo)" in page.inner_text("#gallery-list")

    page.set_input_files("#identify-image", str(mirrored))
    assert submit(page, "#identify-form") == "done", page.inner_text("#identify-form .error")
    assert "Eileen" in page.inner_text("#identify-result")
    page.screenshot(path=artifacts / "tab-faces.png", full_page=True)

    page.click("#gallery-list button")  # remove, with the token still filled in
    page.wait_for_function("document.querySelector('#gallery-list').textContent.includes('nobody')")


def test_gan_tab_samples_a_seeded_grid(page, server, artifacts):
    open_page(page, server, "gan")
    page.fill("#gan-seed", "7")
    page.fill("#gan-n", "16")
    assert submit(page, "#gan-form") == "done", page.inner_text("#gan-form .error")
    page.wait_for_function("document.querySelector('#gan-grid').naturalWidth > 0")
    assert "seed 7" in page.inner_text("#gan-status")
    page.screenshot(path=artifacts / "tab-gan.png", full_page=True)


def test_vae_tab_denoises_a_slice(page, server, artifacts):
    from slimvision.inference.vae import DEMO_DENOISER

    if not DEMO_DENOISER.is_dir():
        pytest.skip("no shipped denoiser")
    open_page(page, server, "vae")
    page.click("#vae-phantom")
    wait_done(page, "#vae-form")
    set_range(page, "#vae-noise", 0.2)
    assert submit(page, "#vae-form") == "done", page.inner_text("#vae-form .error")
    page.wait_for_function("document.querySelector('#vae-denoised').naturalWidth === 128")
    page.screenshot(path=artifacts / "tab-vae.png", full_page=True)


def test_numerals_tab_reads_a_page_and_draws_boxes(page, server, artifacts, tmp_path):
    from slimvision.data.numerals import NoiseConfig, find_fonts, render_page, split_fonts

    train, _ = split_fonts(find_fonts())
    face = [font for font in train if font.name == "DejaVuSerif"]
    image, truth = render_page([14, 1994, 7], face, seed=4, noise=NoiseConfig(level=0.3), size=(500, 600))
    open_page(page, server, "numerals")
    page.set_input_files("#numerals-image", str(save_png(image, tmp_path / "page.png")))
    wait_done(page, "#numerals-form")
    before = canvas_pixels(page, "#numerals-canvas")
    assert submit(page, "#numerals-form") == "done", page.inner_text("#numerals-form .error")
    values = sorted(int(cell) for cell in page.locator("#numerals-table tbody tr td:nth-child(2)").all_inner_texts())
    assert values == sorted(number for number, _ in truth)
    drawn = canvas_pixels(page, "#numerals-canvas")
    assert (np.abs(drawn.astype(int) - before).sum(-1) > 0).sum() > 100  # boxes and labels were drawn
    page.screenshot(path=artifacts / "tab-numerals.png", full_page=True)
    summary = {"read": values, "status": page.inner_text("#numerals-status")}
    print("\n" + json.dumps(summary))
