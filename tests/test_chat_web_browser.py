"""`python -m shared.chat_web` in a real browser: type a prompt, watch tokens stream in, press Stop, and the
server still answers. Skips, naming the install, where Playwright or Chromium is missing."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from browser import chromium_or_skip, watch_page

from shared.pretrained import AUSTEN_GPT_PATH

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "_build" / "screenshots" / "chat-web.png"


def start_server() -> tuple[subprocess.Popen, str]:
    """The command as a reader starts it, on a free port; returns the process and the address it prints."""
    process = subprocess.Popen([sys.executable, "-m", "shared.chat_web", str(AUSTEN_GPT_PATH), "--port", "0"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("Open "):
            return process, line.split()[1]
    process.kill()
    raise AssertionError(f"the server did not start: {process.stderr.read()}")


def test_a_reply_streams_in_the_browser_and_stop_stops_it():
    process, url = start_server()
    try:
        with chromium_or_skip() as browser:
            page = browser.new_page(viewport={"width": 1000, "height": 760})
            problems = watch_page(page, url)
            page.goto(url)
            page.wait_for_function("document.getElementById('card').textContent.includes('1.9M parameters')")
            page.fill("#temperature", "0")
            page.fill("#max_new_tokens", "1000")  # long enough to be stopped half-way
            page.fill("#prompt", "It is a truth universally acknowledged")
            page.click("#send")
            page.wait_for_function("document.querySelector('#transcript .reply').textContent.length > 40")
            assert page.is_disabled("#send") and page.is_enabled("#stop")  # still generating
            page.click("#stop")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('stopped')")
            stopped_at = int(page.text_content("#status").split()[1])
            assert 0 < stopped_at < 1000 and page.is_enabled("#send")
            page.screenshot(path=str(SCREENSHOT.parent.mkdir(parents=True, exist_ok=True) or SCREENSHOT))
            assert not problems.all(), problems.all()

            page.fill("#max_new_tokens", "5")  # the server still answers, to the end this time
            page.click("#send")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('done: 5 tokens')")
            assert page.text_content("#error") == ""

            page.fill("#prompt", "")  # bad input: a message in the page, not a dead server
            page.click("#send")
            page.wait_for_function("document.getElementById('error').textContent.includes('prompt is empty')")
        assert process.poll() is None  # still serving
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0 and "stopped" in out, err
