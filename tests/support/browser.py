"""Headless Chromium for the dashboard tests: Playwright for Python driving Debian's ``chromium``.

Playwright's own browser download is never used (no ``playwright install``): the tests run the
distribution's browser through ``executable_path``, so what is tested is what the machine has.

Accessibility: ``assert_no_serious_axe_violations(page)`` runs axe-core (the npm package, installed
once by ``npm`` into a cache folder outside git, never loaded from a CDN) in the page as it is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
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


# ---- accessibility (axe-core) ------------------------------------------------------------------------

AXE_VERSION = "4.10.3"  # pinned: a newer axe-core's new rules must not fail an unchanged dashboard
SERIOUS = ("serious", "critical")


def _npm_cache() -> Path:
    """Where npm packages for the tests go: ``CAMHUB_NPM_CACHE``, else inside the venv, else ~/.cache."""
    if os.environ.get("CAMHUB_NPM_CACHE"):
        return Path(os.environ["CAMHUB_NPM_CACHE"])
    if sys.prefix != sys.base_prefix:  # a venv (the Makefile's .venv): gitignored, and removed with it
        return Path(sys.prefix) / "npm"
    return Path.home() / ".cache" / "camhub" / "npm"


def axe_source() -> str:
    """axe-core's ``axe.min.js``, installed from the npm registry on first use (skips without npm)."""
    final = _npm_cache() / f"axe-core-{AXE_VERSION}"
    script = final / "node_modules" / "axe-core" / "axe.min.js"
    if not script.is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed (apt-get install nodejs npm)")
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="axe-", dir=final.parent))  # renamed into place when complete
        done = subprocess.run([npm, "install", "--prefix", str(staging), "--no-save", "--no-audit", "--no-fund",
                               "--no-package-lock", f"axe-core@{AXE_VERSION}"],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(f"npm install axe-core@{AXE_VERSION} failed:\n{done.stdout}\n{done.stderr}")
        try:
            staging.rename(final)
        except OSError:  # another run put it there first
            shutil.rmtree(staging, ignore_errors=True)
    return script.read_text()


def axe_violations(page: Any, impacts: tuple[str, ...] = SERIOUS) -> list[dict]:
    """axe-core's violations of ``impacts`` in ``page`` as it is now (axe is injected once per document)."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(axe_source() + "\n;true")  # evaluated by the browser's debugger: no CSP, no CDN
    # Experimental rules too: label-content-name-mismatch (visible text missing from the name a screen
    # reader and voice control use) is one of them.
    result = page.evaluate("""() => axe.run(document, {resultTypes: ['violations'], rules: Object.fromEntries(
        axe.getRules(['experimental']).map((rule) => [rule.ruleId, {enabled: true}]))})""")
    return [v for v in result["violations"] if v.get("impact") in impacts]


def assert_no_serious_axe_violations(page: Any, where: str = "the page") -> None:
    """Fail with every serious or critical axe-core violation in ``page``: rule, elements, what to fix."""
    violations = axe_violations(page)
    if violations:
        lines = [f"{len(violations)} serious/critical axe-core {AXE_VERSION} violation(s) on {where}:"]
        for v in violations:
            lines.append(f"- {v['id']} ({v['impact']}): {v['help']} — {v['helpUrl']}")
            for node in v["nodes"][:10]:
                summary = " ".join(node.get("failureSummary", "").split())
                lines.append(f"    {' '.join(node['target'])}: {node['html'][:160]}\n      {summary[:300]}")
        raise AssertionError("\n".join(lines))
