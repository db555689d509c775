"""Real-browser plumbing for tests: Debian's Chromium driven by Playwright, and a local static file server.

    from browser import chromium_or_skip, serve_directory, watch_page

    with chromium_or_skip() as browser, serve_directory(site) as base_url:
        page = browser.new_page()
        problems = watch_page(page, base_url)
        page.goto(base_url + "index.html")
        assert not problems.all(), problems.all()

A test that needs a browser skips, naming the install command, where Playwright (requirements-web.txt) or
/usr/bin/chromium is missing; Playwright never downloads a browser of its own here. Pages are served over
http from 127.0.0.1, not opened as file://, so that links, fetches and scripts behave as on a web host.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
WEB_INSTALL = "run `make web-install` (pip install -r requirements-web.txt into .venv)"
CHROMIUM_INSTALL = "apt-get install -y --no-install-recommends chromium (Debian; Playwright needs no driver)"
# Headless, and quiet: no GPU, no sandbox (CI runs as root), and no traffic of Chromium's own to the network.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium_or_skip(*, headless: bool = True) -> Iterator[Browser]:
    """A Playwright Browser on /usr/bin/chromium (or $CHROMIUM); skips the test where either is missing."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.skip(f"Playwright is not installed: {WEB_INSTALL}")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: {CHROMIUM_INSTALL}")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=headless, args=LAUNCH_ARGS)
        except Error as error:
            raise RuntimeError(f"Playwright could not start {CHROMIUM}: {error}") from error
        try:
            yield browser
        finally:
            browser.close()


class _QuietHandler(SimpleHTTPRequestHandler):
    """Serves files without logging each request to stderr."""

    def log_message(self, format: str, *args) -> None:
        """Log nothing."""


@contextmanager
def serve_directory(path: Path | str) -> Iterator[str]:
    """Serve a folder over http on 127.0.0.1 at a free port, in a thread; yields the base URL (ending in '/')."""
    handler = functools.partial(_QuietHandler, directory=str(path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=f"serve {path}", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class PageProblems:
    """What went wrong on a page while it was watched: console errors, uncaught errors and bad requests."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    off_site_requests: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        """Every problem, one line each (empty when the page was clean)."""
        return [*self.console_errors, *self.page_errors, *self.failed_requests, *self.off_site_requests]

    def clear(self) -> None:
        """Forget what was seen, e.g. before the next page."""
        for problems in (self.console_errors, self.page_errors, self.failed_requests, self.off_site_requests):
            problems.clear()


def watch_page(page: Page, base_url: str) -> PageProblems:
    """Record the page's console errors, uncaught errors, failed or 4xx/5xx requests, and requests off the site."""
    problems = PageProblems()
    host = urlsplit(base_url).netloc

    def on_request(request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != host:
            problems.off_site_requests.append(f"request off the site: {request.url}")

    def on_failed_request(request) -> None:
        if request.failure != "net::ERR_ABORTED":  # not a failure: the page was left before it finished
            problems.failed_requests.append(f"request failed ({request.failure}): {request.url}")

    def on_response(response) -> None:
        if response.status >= 400:
            problems.failed_requests.append(f"HTTP {response.status}: {response.url}")

    page.on("console", lambda message: message.type == "error" and problems.console_errors.append(
        f"console error on {page.url}: {message.text}"))
    page.on("pageerror", lambda error: problems.page_errors.append(f"page error on {page.url}: {error}"))
    page.on("requestfailed", on_failed_request)
    page.on("request", on_request)
    page.on("response", on_response)
    return problems
