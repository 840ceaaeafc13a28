"""The page in a real headless Chromium (Debian's, driven by Playwright; never ``playwright install``).

Skipped, saying why, where Chromium, Playwright or onnxruntime-web (``make web``) is missing.
Screenshots go to ``tests/web/artifacts/`` (or ``$SLIMVISION_WEB_ARTIFACTS``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

#: The flags issue 7 asks for: no GPU, no sandbox (containers), nothing fetched in the background.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update"]
ARTIFACTS = Path(os.environ.get("SLIMVISION_WEB_ARTIFACTS", Path(__file__).resolve().parent / "artifacts"))
ADMIN_TOKEN = "web-test-token"


def chromium_path() -> str | None:
    for candidate in (os.environ.get("SLIMVISION_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the Python package playwright is not installed (pip install -e '.[dev]')"
    if chromium_path() is None:
        return "no Chromium (apt-get install chromium, or 'make web'); set SLIMVISION_CHROMIUM to use another"
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        return "the server's packages (fastapi, uvicorn) are not installed"
    from slimvision.server.settings import ServerSettings

    runtime = ServerSettings().web_assets / "ort.wasm.min.mjs"
    if not runtime.is_file():
        return f"onnxruntime-web is not installed ({runtime} is missing): run 'make web' (npm ci in web/)"
    return None


MISSING = _missing()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots: {ARTIFACTS}")
    return ARTIFACTS


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> str:
    if MISSING:
        pytest.skip(MISSING)
    from slimvision.server.app import serve_in_thread
    from slimvision.server.settings import ServerSettings

    gallery = tmp_path_factory.mktemp("web") / "gallery.sqlite"
    url, stop = serve_in_thread(ServerSettings(admin_token=ADMIN_TOKEN, gallery=gallery))
    yield url
    stop()


@pytest.fixture(scope="session")
def browser():
    if MISSING:
        pytest.skip(MISSING)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


class PageWatch:
    """What a page did: its console errors, uncaught exceptions, and every URL it requested."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        self.urls: list[str] = []
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", lambda request: self.urls.append(request.url))


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    tab.watch = PageWatch(tab)
    tab.set_default_timeout(90_000)
    yield tab
    context.close()
