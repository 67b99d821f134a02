"""A real headless Chromium (Debian's ``chromium``), driven over the DevTools protocol.

A small client over one websocket (``websocket-client``): it starts the browser with a fresh
profile and no network services, opens a page, records every script error, console error,
failed or 4xx/5xx resource, and evaluates JavaScript in the page. No downloaded browser.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--mute-audio", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0")
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


def chromium_path() -> str | None:
    """Debian's Chromium, or None with the reason left to :func:`why_no_browser`."""
    for path in (os.environ.get("UWSTEGO_CHROMIUM"), *CHROMIUM_CANDIDATES):
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


def why_no_browser() -> str | None:
    """Why the browser test cannot run here, or None."""
    if chromium_path() is None:
        return ("Debian's chromium is not installed (apt-get install chromium; .ci/run installs "
                "it, or set UWSTEGO_CHROMIUM)")
    try:
        import websocket  # noqa: F401
    except ImportError:
        return "websocket-client is not installed (pip install websocket-client; dev extra)"
    return None


@dataclass
class PageProblems:
    """What a page logged that a user would call broken."""

    errors: list[str] = field(default_factory=list)

    def add(self, event: dict[str, Any]) -> None:
        method, p = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            self.errors.append(f"script error: {p['exceptionDetails'].get('text')} "
                               f"{p['exceptionDetails'].get('exception', {}).get('description')}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append(f"console.{p['type']}: "
                               + " ".join(str(a.get("value", a.get("description")))
                                          for a in p.get("args", [])))
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            self.errors.append(f"log error: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            self.errors.append(f"resource failed: {p.get('errorText')} ({p.get('type')})")
        elif method == "Network.responseReceived" and p["response"].get("status", 200) >= 400:
            self.errors.append(f"resource {p['response']['url']}: HTTP "
                               f"{p['response']['status']}")


class Page:
    """One tab over the DevTools protocol."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.problems = PageProblems()
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []

    def close(self) -> None:
        self.ws.close()

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call ``method`` and return its result; events that arrive meanwhile are recorded."""
        call = next(self._ids)
        self.ws.send(json.dumps({"id": call, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        self.problems.add(message)
        self._events.append(message)

    def wait_for(self, method: str, timeout_s: float = 30.0) -> dict[str, Any]:
        if (seen := next((e for e in self._events if e.get("method") == method), None)):
            return seen
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if "method" in message:
                self._event(message)
                if message["method"] == method:
                    return message
        raise TimeoutError(f"no {method} within {timeout_s} s")

    def open(self, url: str) -> None:
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.send(f"{domain}.enable")
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str, timeout_s: float = 30.0) -> Any:
        """The value of ``expression`` (a promise is awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True, timeout=int(timeout_s * 1000))
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")


@contextlib.contextmanager
def chromium(timeout_s: float = 30.0) -> Iterator[Page]:
    """A fresh headless Chromium (own profile, killed afterwards) and its first tab."""
    path = chromium_path()
    assert path is not None, why_no_browser()
    with tempfile.TemporaryDirectory(prefix="uwstego-chromium-") as profile:
        # Its own process group: the renderer and helper processes still write to the profile
        # after the browser process alone is killed, and the profile's removal then fails.
        proc = subprocess.Popen([path, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        page: Page | None = None
        try:
            browser_ws = _devtools_url(proc, timeout_s)
            port = int(browser_ws.split(":")[2].split("/")[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = json.load(r)
            tab = next(t for t in targets if t.get("type") == "page")
            page = Page(tab["webSocketDebuggerUrl"])
            yield page
        finally:
            if page is not None:
                page.close()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _devtools_url(proc: subprocess.Popen[str], timeout_s: float) -> str:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if (match := _LISTENING.search(line)):
            # Keep draining stderr so that a chatty browser never blocks on a full pipe.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return match.group(1)
    raise RuntimeError("chromium did not start its DevTools endpoint: " + "".join(seen)[-2000:])


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """``folder`` over HTTP on localhost (a random port); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".webm": "video/webm", ".mp4": "video/mp4"}

    def log_message(self, format: str, *args: Any) -> None:
        pass
