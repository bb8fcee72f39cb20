"""Headless Chromium driven over the DevTools protocol, for tests of what a page renders.

A page stays open, as an operator's would; :meth:`Page.wait_for` blocks
until every given string is in the rendered HTML, woken by the page's own
DOM changes (a MutationObserver), never by sleeping or reloading.
"""
from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import threading
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

_WAIT_JS = """new Promise((resolve) => {
  const want = %s, done = () => want.every((s) => document.documentElement.outerHTML.includes(s));
  let pending = false;
  const finish = () => { obs.disconnect(); resolve(document.documentElement.outerHTML); };
  const obs = new MutationObserver(() => {
    if (pending) return;
    pending = true;
    queueMicrotask(() => { pending = false; if (done()) finish(); });
  });
  obs.observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
  setTimeout(finish, %d);
  if (done()) finish();
})"""


class Page:
    """One tab of :class:`Browser`, connected to its DevTools endpoint."""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect
        self._ws = connect(ws_url, max_size=64 * 1024 * 1024, open_timeout=30)
        self._ids = itertools.count(1)

    def call(self, method: str, timeout: float = 60.0, **params) -> dict:
        """One DevTools command; its ``result``. Raises RuntimeError with the protocol's error."""
        i = next(self._ids)
        self._ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv(timeout=timeout))
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def navigate(self, url: str, timeout: float = 60.0) -> None:
        """Load ``url`` and return once its load event fired."""
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        while json.loads(self._ws.recv(timeout=timeout)).get("method") != "Page.loadEventFired":
            pass

    def wait_for(self, *strings: str, timeout: float = 90.0) -> str:
        """The page's HTML once it contains every one of ``strings`` (or after ``timeout`` s, as it is then)."""
        r = self.call("Runtime.evaluate", timeout=timeout + 30, awaitPromise=True, returnByValue=True,
                      expression=_WAIT_JS % (json.dumps(list(strings)), int(timeout * 1000)))
        return r["result"]["value"]

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression in the page."""
        r = self.call("Runtime.evaluate", returnByValue=True, expression=expression)
        return r["result"].get("value")

    def screenshot(self, path: Path) -> None:
        """The viewport as a PNG file."""
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        self._ws.close()


class Browser:
    """Headless Chromium with a DevTools port (read from its own start-up line)."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 1400):
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--window-size={width},{height}", "--remote-debugging-port=0",
             "--remote-allow-origins=*", "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            if line.startswith("DevTools listening on "):
                self.ws = line.split(" on ", 1)[1].strip()
                break
        else:
            raise RuntimeError("chromium did not start its DevTools endpoint")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # keep its pipe drained
        self._root = self.ws.split("/devtools/")[0]

    def open(self, url: str) -> Page:
        """A new tab loading ``url``."""
        browser = Page(self.ws)
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        browser.close()
        page = Page(f"{self._root}/devtools/page/{target}")
        page.navigate(url)
        return page

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
