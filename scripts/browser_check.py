"""Load a cv report.html in headless Chromium: does every audio player load, is the console clean?

Only the ``chromium`` binary is needed: the script speaks the DevTools protocol
over ``--remote-debugging-pipe`` (JSON messages ended by a NUL byte on file
descriptors 3 and 4), so no Python browser package is involved.

Usage::

    python scripts/browser_check.py REPORT_DIR/report.html [--shot '#errors=errors.png' ...]

prints one JSON object: the audio elements (readyState, duration, error),
the console errors, and the screenshots taken (an element's box, by CSS
selector). Exit code 1 when a player does not load or the console has an error.
tests/test_browser.py uses :func:`check_page`.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
)

AUDIO_STATE = """(async () => {
  const audios = [...document.querySelectorAll('audio')];
  const deadline = Date.now() + %d;
  // preload="metadata": each player decodes its data URI's header on its own schedule.
  while (Date.now() < deadline && audios.some(a => a.readyState < 1 && !a.error)) {
    await new Promise(r => setTimeout(r, 50));
  }
  return audios.map(a => ({readyState: a.readyState, duration: a.duration,
                           error: a.error ? (a.error.code + ' ' + a.error.message) : null}));
})()"""


def find_chromium() -> str | None:
    """The Chromium (or Chrome) binary on the PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """A headless Chromium driven over the DevTools pipe; one page (target) attached."""

    def __init__(self, binary: str, profile: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        args = [*FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]

        def pipe_on_3_and_4() -> None:
            # In the child: the pipe ends on descriptors 3 and 4, where --remote-debugging-pipe expects them
            # (first moved above 10, so that neither overwrites the other).
            import fcntl

            read_end, write_end = (
                fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10),
                fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10),
            )
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        # Chromium's own log (noisy: D-Bus, GPU) goes to $BROWSER_CHECK_LOG when set, for debugging.
        with open(os.environ.get("BROWSER_CHECK_LOG", os.devnull), "ab") as log:
            self.process = subprocess.Popen(
                [binary, *args],
                close_fds=False,  # Python's own descriptors are not inheritable (PEP 446): only 3 and 4 pass
                preexec_fn=pipe_on_3_and_4,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict[str, Any]:
        """Send one command and wait for its answer (events meanwhile are kept in ``events``)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        """Wait for an event of this page."""
        while True:
            for k, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(k)
            self.events.append(self._read())

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_chrome], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError(f"no answer from Chromium in {self.timeout:.0f} s")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe (exit code {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open_page(self, width: int = 1200, height: int = 900) -> None:
        """Attach to a new blank page, with the console, log and page events on."""
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def screenshot(self, selector: str, path: str | os.PathLike[str], max_height: int = 4000) -> bool:
        """A PNG of one element's box (its top ``max_height`` pixels); False when there is no such element."""
        import base64

        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " const r = e.getBoundingClientRect();"
            " return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; })()"
        )
        if not box:
            return False
        clip = {**box, "height": min(box["height"], max_height), "scale": 1}
        shot = self.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True})
        Path(path).write_bytes(base64.b64decode(shot["data"]))
        return True

    def console_errors(self) -> list[str]:
        """Errors the page raised or logged since it was opened."""
        errors = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                errors.append(str(details.get("exception", {}).get("description") or details.get("text")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                errors.append(str(params["entry"].get("text")))
        return errors

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def check_page(
    html_path: str | os.PathLike[str],
    shots: dict[str, str] | None = None,
    binary: str | None = None,
    audio_wait_ms: int = 20000,
) -> dict[str, Any]:
    """Open ``html_path`` in headless Chromium; report its audio players and console errors.

    Returns
    -------
    dict
        ``audio`` (per element: readyState, duration, error), ``console_errors``,
        ``screenshots`` (selector -> path, for those found), ``seconds``.
    """
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium binary on the PATH")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hmmclf-chromium-") as profile:
        browser = Browser(binary, profile)
        try:
            browser.open_page()
            browser.send("Page.navigate", {"url": Path(html_path).resolve().as_uri()})
            browser.wait_for("Page.loadEventFired")
            audio = browser.evaluate(AUDIO_STATE % audio_wait_ms)
            taken = {}
            for selector, path in (shots or {}).items():
                if browser.screenshot(selector, path):
                    taken[selector] = str(path)
            errors = browser.console_errors()
        finally:
            browser.close()
    return {"audio": audio, "console_errors": errors, "screenshots": taken, "seconds": time.monotonic() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html")
    parser.add_argument("--shot", action="append", default=[], metavar="SELECTOR=PNG")
    args = parser.parse_args()
    shots = dict(item.rsplit("=", 1) for item in args.shot)
    if not Path(args.html).is_file():
        parser.error(f"{args.html}: no such file")
    result = check_page(args.html, shots)
    bad = [a for a in result["audio"] if a["readyState"] < 1 or not a["duration"] or a["error"]]
    summary = {
        "players": len(result["audio"]),
        "players_not_loaded": len(bad),
        "console_errors": result["console_errors"],
        "screenshots": result["screenshots"],
        "seconds": round(result["seconds"], 1),
    }
    print(json.dumps(summary, indent=2))
    return 1 if bad or result["console_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
