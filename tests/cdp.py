"""Headless Chromium driven over the Chrome DevTools Protocol, with aiohttp's WebSocket client (the [web]
extra) instead of a browser-automation package: start, open a page, evaluate JavaScript, screenshot."""
import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-port=0", "--window-size=1280,1560", "about:blank"]


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """``async with Browser() as b: await b.goto(url); await b.eval("1+1")``"""

    def __init__(self, binary=None, timeout=60):
        self.binary = binary or find_chromium()
        self.timeout = timeout
        self.ids = itertools.count(1)

    async def __aenter__(self):
        import aiohttp
        self.profile = tempfile.mkdtemp(prefix="evrt-chromium-")
        self.proc = subprocess.Popen([self.binary, f"--user-data-dir={self.profile}", *FLAGS],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + self.timeout
        while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit {self.proc.poll()})")
            await asyncio.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        self.http = aiohttp.ClientSession()
        async with self.http.get(f"http://127.0.0.1:{port}/json/list") as r:
            page = next(t for t in await r.json() if t["type"] == "page")
        self.ws = await self.http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=64 << 20)
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()
        await self.http.close()
        self.proc.kill()
        self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)

    async def call(self, method, **params):
        i = next(self.ids)
        await self.ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads((await self.ws.receive(timeout=self.timeout)).data)
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def goto(self, url):
        await self.call("Page.enable")
        await self.call("Page.navigate", url=url)

    async def eval(self, expr):
        res = await self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"JavaScript failed: {res['exceptionDetails'].get('text')}")
        return res["result"].get("value")

    async def screenshot(self) -> bytes:
        return base64.b64decode((await self.call("Page.captureScreenshot", format="png"))["data"])
