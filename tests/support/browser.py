"""Headless Chromium for the dashboard tests: Playwright for Python driving Debian's ``chromium``.

Playwright's own browser download is never used (no ``playwright install``): the tests run the
distribution's browser through ``executable_path``, so what is tested is what the machine has.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """Debian's chromium (``CAMHUB_CHROMIUM`` overrides), or None when it is not installed."""
    for candidate in (os.environ.get("CAMHUB_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def require_chromium() -> str:
    """The chromium path, or skip the calling test with the command that installs it."""
    path = chromium_path()
    if path is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    return path


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A Playwright ``Browser`` running Debian's chromium headless; closed on exit."""
    from playwright.sync_api import sync_playwright

    path = require_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def page(browser: Any, **context_options: Any) -> Iterator[Any]:
    """A fresh page in its own context (no shared cache or cookies between tests)."""
    options = {"viewport": {"width": 1440, "height": 1000}, **context_options}
    context = browser.new_context(**options)
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()
