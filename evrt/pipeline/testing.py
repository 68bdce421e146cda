"""Helpers for pipeline tests and benchmarks: synthetic streams, a fake session, threads that stop."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from ..events import make_events

__all__ = ["synthetic_events", "FakeSession", "ANY_PORT", "bind_any", "bound_endpoint", "tcp", "Background",
           "collect_predictions"]

# Loopback with the port left to the OS at bind time ("*" is ZeroMQ's spelling of port 0). Probing for a
# free port and binding it later races with every other test doing the same; this cannot.
ANY_PORT = "tcp://127.0.0.1:*"


def synthetic_events(n: int = 20_000, sensor=(32, 32), duration_us: int = 500_000, seed: int = 0,
                     t0: int = 1_000) -> np.ndarray:
    """A moving blob of time-ordered events (some timestamps repeat, as real cameras' do)."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(t0, t0 + duration_us, n)).astype(np.uint64)
    w, h = sensor
    cx = w / 2 + (w / 3) * np.sin(t.astype(float) / 8e4)
    x = np.clip(np.round(rng.normal(cx, w / 8)), 0, w - 1).astype(int)
    y = np.clip(np.round(rng.normal(h / 2, h / 8, n)), 0, h - 1).astype(int)
    return make_events(t, x, y, rng.integers(0, 2, n))


@dataclass
class _Out:
    logits: np.ndarray
    readout: np.ndarray
    t: int
    acs: int = 0
    macs: int = 0


class FakeSession:
    """Stands in for ``engine.Session``: logits depend on the window's content and the state (so a
    missed reset shows), optional sleep per step to play a slow consumer."""
    classes = ["a", "b", "c"]

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.reset()

    def reset(self):
        self.t = 0
        self.acc = np.zeros(3)

    def step(self, ev):
        if self.delay_s:
            time.sleep(self.delay_s)
        n = len(ev)
        x = float(ev["x"].astype(np.int64).sum()) if n else 0.0
        logits = np.array([n, x % 97, (n * 7 + self.t) % 13], float)
        self.acc += logits
        out = _Out(logits, self.acc / (self.t + 1), self.t, acs=n)
        self.t += 1
        return out


def bound_endpoint(sock) -> str:
    """The endpoint a socket actually bound (with the port the OS picked for ``ANY_PORT``)."""
    import zmq
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def bind_any(ctx, kind: int, **kw):
    """``open_socket(..., bind=True)`` on a loopback port the OS picks: (socket, its endpoint)."""
    from .sockets import open_socket
    sock = open_socket(ctx, kind, ANY_PORT, bind=True, **kw)
    return sock, bound_endpoint(sock)


def private_endpoint() -> str:
    """An ``ipc://`` endpoint in a fresh private directory: no other socket can want it, unlike a probed
    TCP port, and a process restarted on it (the soak's kill -9) binds it again."""
    import atexit
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="evrt-")
    atexit.register(shutil.rmtree, d, True)
    return f"ipc://{d}/s"


def tcp(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


class Background(threading.Thread):
    """Run ``fn`` in a daemon thread and keep its result or exception for ``result()``."""

    def __init__(self, fn, *args, **kwargs):
        super().__init__(daemon=True)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.value = self.error = None
        self.start()

    def run(self):
        try:
            self.value = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # surfaced by result()
            self.error = exc

    def result(self, timeout: float):
        self.join(timeout)
        if self.is_alive():
            raise TimeoutError(f"{self.fn.__name__} still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.value


def collect_predictions(sock, timeout_s: float = 20.0, until_eos: int = 1, limit: int = 100_000):
    """Read ``[topic, JSON]`` messages until ``until_eos`` end-of-stream markers, ``limit`` messages or
    the timeout. Returns (predictions as dicts, eos dicts)."""
    from .protocol import TOPIC_EOS, decode_json

    preds, eos = [], []
    deadline = time.monotonic() + timeout_s
    while len(eos) < until_eos and len(preds) < limit and time.monotonic() < deadline:
        if sock.poll(50):
            topic, obj = decode_json(sock.recv_multipart())
            (eos if topic == TOPIC_EOS else preds).append(obj)
    return preds, eos
