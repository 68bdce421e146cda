"""The live page's web server: aiohttp (optional extra ``[web]``) on its own thread and event loop.

Every ``1/rate_hz`` seconds, if something changed, the loop renders one frame from the ``LiveState``
(a JSON text message and a binary ON/OFF image) and puts it in each viewer's one-frame slot; a viewer's
sender task sends whatever is in its slot when the previous send has finished. A slow browser therefore
skips frames (counted, and shown to it) instead of queueing them, a closed one is forgotten, and the
classifier never waits for any of them. The page and its script are package data: no network asset.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import struct
import threading
from importlib import resources

from ..errors import EvrtError

__all__ = ["WebServer", "parse_web_addr", "NO_AIOHTTP"]

NO_AIOHTTP = ('the live page needs aiohttp, which is not installed; install it with: pip install "evrt[web]"')
MAX_VIEWERS = 32


def parse_web_addr(text: str) -> tuple:
    """``[HOST:]PORT`` -> (host, port); the host defaults to loopback (the page is not for the network
    unless asked)."""
    host, _, port = str(text).rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise EvrtError(f"--web {text!r}: expected [HOST:]PORT with PORT 0-65535 (0 = any free port)")
    return host, int(port)


def _aiohttp():
    try:
        from aiohttp import WSMsgType, web
    except ImportError:
        raise EvrtError(NO_AIOHTTP) from None
    return web, WSMsgType


class _Viewer:
    def __init__(self, ws):
        self.ws = ws
        self.slot = None          # the newest frame not yet sent
        self.ready = asyncio.Event()
        self.sent = self.skipped = 0


class WebServer:
    def __init__(self, live, host: str = "127.0.0.1", port: int = 0, rate_hz: float = 10.0, log=None):
        self.web, self.msg_type = _aiohttp()
        self.live, self.host, self.port, self.log = live, host, int(port), log
        self.period = 1.0 / max(float(rate_hz), 0.1)
        self.viewers: set = set()
        self.frames = 0
        self.skipped = 0  # frames replaced before a slow viewer took them, all viewers together
        self._ready = threading.Event()
        self._error = None
        self._loop = None
        self._stopping = None
        self._thread = threading.Thread(target=self._run, name="evrt-web", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # ---------------------------------------------------------------------------------- main thread
    def start(self) -> "WebServer":
        self._thread.start()
        if not self._ready.wait(30):
            raise EvrtError(f"--web {self.host}:{self.port}: the web server did not start within 30 s")
        if self._error:
            raise EvrtError(self._error)
        if self.log:
            self.log.info(f"live page: {self.url}")
            if self.host not in ("127.0.0.1", "localhost", "::1"):
                self.log.warn(f"the live page listens on {self.host}: anyone who can reach this machine can watch "
                              "it (there is no login)")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)

    # ------------------------------------------------------------------------------------ web thread
    def _run(self):
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        except Exception as exc:  # never take the classifier down with the page
            if not self._ready.is_set():
                self._error = f"--web {self.host}:{self.port}: {exc}"
                self._ready.set()
            elif self.log:
                self.log.warn(f"live page stopped: {exc}")
        finally:
            loop.close()

    async def _main(self):
        web = self.web
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/state.json", self._state)
        app.router.add_get("/ws", self._ws)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                self._error = (f"--web {self.host}:{self.port}: the port is already in use (another evrt serve "
                               "--web?); choose another port, or 0 for any free one")
            else:
                self._error = f"--web {self.host}:{self.port}: cannot listen there: {exc.strerror or exc}"
            self._ready.set()
            return
        self.port = site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked for
        self._ready.set()
        ticker = asyncio.ensure_future(self._tick())
        try:
            await self._stopping.wait()
        finally:
            ticker.cancel()
            for v in list(self.viewers):
                await v.ws.close(code=1001, message=b"evrt stopped")
            await runner.cleanup()

    async def _tick(self):
        seen = None
        while True:
            await asyncio.sleep(self.period)
            if not self.viewers or self.live.version == seen:
                continue
            seen = self.live.version
            try:
                frame = self._frame()
            except Exception as exc:  # a bad frame must not end the page (nor the classifier)
                if self.log:
                    self.log.warn(f"live page: could not render a frame: {exc}")
                continue
            self.frames += 1
            for v in self.viewers:
                if v.slot is not None:
                    v.skipped += 1  # the viewer has not taken the previous frame: it is slow
                    self.skipped += 1
                v.slot = frame
                v.ready.set()

    def _frame(self) -> tuple:
        state = self.live.snapshot()
        w, h, img = self.live.image()
        return json.dumps(_finite(state), separators=(",", ":"), allow_nan=False, default=_jsonable), \
            struct.pack("<HH", w, h) + img

    async def _send_loop(self, v: _Viewer):
        while not v.ws.closed:
            await v.ready.wait()
            v.ready.clear()
            frame, v.slot = v.slot, None
            if frame is None:
                continue
            text, image = frame
            try:
                await v.ws.send_str(text[:-1] + f',"viewer":{{"frames":{v.sent},"skipped":{v.skipped},'
                                                f'"viewers":{len(self.viewers)}}}}}')
                await v.ws.send_bytes(image)
            except (ConnectionError, RuntimeError):
                return
            v.sent += 1

    async def _index(self, request):
        page = resources.files("evrt.web").joinpath("static/index.html").read_bytes()
        return self.web.Response(body=page, content_type="text/html", charset="utf-8",
                                 headers={"Cache-Control": "no-store"})

    async def _state(self, request):
        return self.web.json_response(_finite(self.live.snapshot()), dumps=lambda o: json.dumps(o, default=_jsonable))

    async def _ws(self, request):
        web = self.web
        if len(self.viewers) >= MAX_VIEWERS:
            return web.Response(status=503, text=f"at most {MAX_VIEWERS} viewers at once")
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=4096)
        await ws.prepare(request)
        v = _Viewer(ws)
        self.viewers.add(v)
        # a viewer that joins gets the current state at once, not at the next change
        v.slot = self._frame()
        v.ready.set()
        sender = asyncio.ensure_future(self._send_loop(v))
        try:
            async for _ in ws:  # the page sends nothing that matters; this just notices the close
                pass
        finally:
            self.viewers.discard(v)
            sender.cancel()
        return ws


def _jsonable(o):
    try:
        return float(o)
    except (TypeError, ValueError):
        return str(o)


def _finite(o):
    """NaN and infinities -> None: JSON has no such numbers and the page's JSON.parse refuses them."""
    if isinstance(o, float):
        return o if o == o and abs(o) != float("inf") else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


@contextlib.contextmanager
def live_page(addr, rate_hz: float, title: str, log=None):
    """The ``LiveState`` a command feeds while its page is served at ``addr`` (``[HOST:]PORT``), or None
    when ``addr`` is None. Started first, so a busy port or a missing extra fails before a model loads."""
    if not addr:
        yield None
        return
    from .live import LiveState
    host, port = parse_web_addr(addr)
    live = LiveState(title=title)
    server = WebServer(live, host, port, rate_hz=rate_hz, log=log).start()
    try:
        yield live
    finally:
        server.stop()
