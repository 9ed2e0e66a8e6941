"""A real headless Chromium driven over the DevTools protocol (tornado's websocket client), for
tests that must see a page as a browser renders it: the DOM after scripts ran, clicks, and every
request the page made."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """`with Page(url) as page: page.js("document.title")`; `page.requests` lists every URL fetched."""

    def __init__(self, url: str, timeout_s: float = 60.0):
        self.url, self.timeout_s = url, timeout_s
        self.requests: list[str] = []
        self._profile = tempfile.mkdtemp(prefix="cwm-bench-chromium-")
        self._loop = asyncio.new_event_loop()
        self._ids = 0

    def __enter__(self) -> Page:
        if chromium() is None:
            raise RuntimeError("no chromium on PATH (.ci/run installs Debian's: apt-get install chromium)")
        self._process = subprocess.Popen(
            [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             "--disable-background-networking", "--remote-debugging-port=0", f"--user-data-dir={self._profile}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self._profile, "DevToolsActivePort")
        deadline = time.monotonic() + self.timeout_s
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError("chromium did not start")
            time.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
                    targets = [t for t in json.load(answer) if t["type"] == "page"]
                if targets:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chromium has no page")
            time.sleep(0.1)
        self._loop.run_until_complete(self._open(targets[0]["webSocketDebuggerUrl"]))
        return self

    async def _open(self, ws_url: str) -> None:
        from tornado.websocket import websocket_connect

        self._ws = await websocket_connect(ws_url, max_message_size=64 << 20)
        await self._call("Network.enable")
        await self._call("Page.enable")
        await self._call("Page.navigate", url=self.url)
        await self._until("Page.loadEventFired")

    async def _call(self, method: str, **params) -> dict:
        self._ids += 1
        mine = self._ids
        await self._ws.write_message(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            message = await self._next()
            if message.get("id") == mine:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def _next(self) -> dict:
        raw = await asyncio.wait_for(self._ws.read_message(), self.timeout_s)
        if raw is None:
            raise RuntimeError("chromium closed the connection")
        message = json.loads(raw)
        if message.get("method") == "Network.requestWillBeSent":
            self.requests.append(message["params"]["request"]["url"])
        self._last_event = message.get("method")
        return message

    async def _until(self, event: str) -> None:
        while (await self._next()).get("method") != event:
            pass

    def js(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serializable values)."""
        result = self._loop.run_until_complete(self._call("Runtime.evaluate", expression=expression,
                                                          returnByValue=True, awaitPromise=True))
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def __exit__(self, *exc) -> None:
        try:
            self._ws.close()
        except Exception:  # noqa: BLE001
            pass
        self._process.kill()
        self._process.wait()
        self._loop.close()
        shutil.rmtree(self._profile, ignore_errors=True)
