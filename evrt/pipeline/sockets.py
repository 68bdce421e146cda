"""Socket plumbing shared by every pipeline command: addresses, bounded queues, CURVE security.

Conventions: the side that binds is the CURVE *server*, the side that connects is the *client*.
``evrt keys DIR`` writes ``DIR/server.key(_secret)``, ``DIR/client.key(_secret)`` and
``DIR/authorized_clients/client.key``; a server accepts exactly the public keys found in
``DIR/authorized_clients`` (copy more client ``.key`` files there to admit more clients).
"""
from __future__ import annotations

import ipaddress
import shutil
import sys
from pathlib import Path

import zmq

from ..errors import EvrtError

__all__ = ["normalize_addr", "is_loopback", "Curve", "make_keys", "open_socket", "DEFAULT_HWM", "LINGER_MS",
           "MAX_MSG_BYTES", "PeerWatch", "open_watched"]

DEFAULT_HWM = 64      # messages; at ~10 ms packets this is under a second of camera data
LINGER_MS = 1000      # how long close() may wait to deliver what is still queued
# ZMQ_MAXMSGSIZE of every receiving socket: a peer sending more is disconnected by ZeroMQ before the
# message is allocated. 4 MiB = 322 k events of 13 bytes, over 2x a 12 Mev/s sensor's 10 ms packet; with
# the default HWM of 64 a peer's queue holds at most 256 MiB (docs/ROBUSTNESS.md has the whole budget).
MAX_MSG_BYTES = 4 << 20


def normalize_addr(addr: str, default_host: str = "127.0.0.1") -> str:
    """``5555`` / ``:5555`` / ``host:5555`` / full ZeroMQ endpoints -> a ZeroMQ endpoint; the default
    host is loopback so nothing is exposed unless asked for."""
    addr = str(addr).strip()
    if "://" in addr:
        return addr
    if addr.isdigit():
        return f"tcp://{default_host}:{addr}"
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise EvrtError(f"address {addr!r} is not PORT, HOST:PORT or a ZeroMQ endpoint (tcp://HOST:PORT)")
    return f"tcp://{host or default_host}:{port}"


def is_loopback(endpoint: str) -> bool:
    if not endpoint.startswith("tcp://"):
        return True  # ipc:// and inproc:// never leave the machine
    host = endpoint[len("tcp://"):].rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name or a DNS name: assume it is reachable from outside


def make_keys(directory: str | Path, force: bool = False) -> dict:
    """Create a server and a client keypair and authorise the client. Returns the paths written."""
    import zmq.auth

    d = Path(directory)
    if (d / "server.key_secret").exists() and not force:
        raise EvrtError(f"{d} already holds keys (server.key_secret); pass --force to replace them")
    d.mkdir(parents=True, exist_ok=True)
    server_pub, server_sec = zmq.auth.create_certificates(str(d), "server")
    client_pub, client_sec = zmq.auth.create_certificates(str(d), "client")
    auth = d / "authorized_clients"
    auth.mkdir(exist_ok=True)
    shutil.copy(client_pub, auth / "client.key")
    for p in (server_sec, client_sec):
        Path(p).chmod(0o600)
    return {"server_public": server_pub, "server_secret": server_sec, "client_public": client_pub,
            "client_secret": client_sec, "authorized": str(auth)}


class Curve:
    """CURVE keys from a directory made by ``make_keys``. One authenticator per context (it runs a
    thread answering ZAP requests for every CURVE server socket of that context)."""

    def __init__(self, directory: str | Path):
        import zmq.auth

        self.dir = Path(directory)
        self._auth = None
        try:
            self.server_public, self.server_secret = (None, None)
            if (self.dir / "server.key_secret").exists():
                self.server_public, self.server_secret = zmq.auth.load_certificate(str(self.dir / "server.key_secret"))
            elif (self.dir / "server.key").exists():
                self.server_public, _ = zmq.auth.load_certificate(str(self.dir / "server.key"))
            self.client_public = self.client_secret = None
            if (self.dir / "client.key_secret").exists():
                self.client_public, self.client_secret = zmq.auth.load_certificate(str(self.dir / "client.key_secret"))
        except (OSError, ValueError) as exc:
            raise EvrtError(f"cannot read CURVE keys in {self.dir}: {exc}") from None
        if self.server_public is None:
            raise EvrtError(f"no server.key in {self.dir}; create keys with `evrt keys {self.dir}`")

    def start(self, ctx: zmq.Context) -> None:
        if self._auth is not None:
            return
        from zmq.auth.thread import ThreadAuthenticator

        auth_dir = self.dir / "authorized_clients"
        if not auth_dir.is_dir():
            raise EvrtError(f"{auth_dir} is missing; create keys with `evrt keys {self.dir}`")
        self._auth = ThreadAuthenticator(ctx)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(auth_dir))

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def server(self, sock: zmq.Socket) -> None:
        if self.server_secret is None:
            raise EvrtError(f"{self.dir} has no server.key_secret; this side binds and must be the CURVE server")
        self.start(sock.context)
        sock.curve_secretkey = self.server_secret
        sock.curve_publickey = self.server_public
        sock.curve_server = True

    def client(self, sock: zmq.Socket) -> None:
        if self.client_secret is None:
            raise EvrtError(f"{self.dir} has no client.key_secret; this side connects and needs a client keypair")
        sock.curve_secretkey = self.client_secret
        sock.curve_publickey = self.client_public
        sock.curve_serverkey = self.server_public


def open_socket(ctx: zmq.Context, kind: int, addr: str, bind: bool, hwm: int = DEFAULT_HWM,
                curve: Curve | None = None, subscribe: bytes | None = b"", log=None,
                max_msg_bytes: int = MAX_MSG_BYTES, _before=None) -> zmq.Socket:
    """A socket with bounded queues (SNDHWM/RCVHWM, so at most ``hwm`` x ``max_msg_bytes`` per peer
    queue), a maximum message size, linger, optional CURVE, bound or connected."""
    endpoint = normalize_addr(str(addr).split(",")[0] if not bind else addr)
    if int(hwm) < 1:
        raise EvrtError(f"--hwm must be at least 1 message, got {hwm}")
    if int(max_msg_bytes) < 1024:
        raise EvrtError(f"the maximum message size must be at least 1 KiB, got {max_msg_bytes} bytes")
    sock = ctx.socket(kind)
    sock.sndhwm = sock.rcvhwm = int(hwm)
    sock.maxmsgsize = int(max_msg_bytes)  # bounds what a peer can make us allocate, per message
    sock.linger = LINGER_MS
    if kind == zmq.SUB and subscribe is not None:
        sock.setsockopt(zmq.SUBSCRIBE, subscribe)
    if curve is not None:
        (curve.server if bind else curve.client)(sock)
    if _before is not None:
        _before(sock)
    try:
        if bind:
            if not is_loopback(endpoint) and curve is None:
                msg = f"binding {endpoint} without --curve-keys: anyone who can reach it can read and inject data"
                (log.warn(msg) if log else print(f"evrt: warning: {msg}", file=sys.stderr))
            sock.bind(endpoint)
        else:  # a comma-separated list connects to several peers (one classifier, many sources)
            for one in str(addr).split(","):
                sock.connect(normalize_addr(one))
    except zmq.ZMQError as exc:
        sock.close(0)
        raise EvrtError(f"cannot {'bind' if bind else 'connect'} {endpoint}: {exc}") from None
    return sock


def open_watched(ctx: zmq.Context, kind: int, addr: str, bind: bool, what: str = "peer", log=None, **kw):
    """``(socket, PeerWatch)``: ``open_socket`` with the monitor attached *before* bind/connect, so no
    connection is missed (a peer that connected before the watch would count as absent)."""
    box = []
    try:
        sock = open_socket(ctx, kind, addr, bind, log=log, _before=lambda s: box.append(PeerWatch(s, log, what)), **kw)
    except BaseException:
        for w in box:  # a monitor socket left open would keep the context from terminating
            w.mon.close(0)
        raise
    return sock, box[0]


def drain_and_term(ctx: zmq.Context, socks, stop, log=None, linger_ms: int = -1) -> bool:
    """Close ``socks`` and terminate ``ctx``, letting queued messages reach their peer. A PUSH replay
    must not lose its tail, and ZeroMQ has no delivery receipt, so with ``linger_ms=-1`` we wait as long
    as it takes — in a helper thread, so SIGINT/SIGTERM (``stop``) can still abandon the wait. Returns
    False when abandoned."""
    import threading

    for s in socks:
        s.close(linger=linger_ms)
    th = threading.Thread(target=ctx.term, name="evrt-drain", daemon=True)
    th.start()
    th.join(0.5)
    if th.is_alive() and log is not None:
        log.info("waiting for the consumer to take the queued messages (Ctrl-C to abandon them)")
    while th.is_alive():
        if stop.wait(0.1) and th.is_alive():
            th.join(1.0)  # a last second, then give up: the process exits with the thread abandoned
            return not th.is_alive()
    return True


class PeerWatch:
    """Follows a socket's connections through a ZeroMQ monitor, without blocking: how many peers are
    connected now, and every refused handshake (a wrong CURVE key, a non-ZMTP peer), which is logged —
    a refused peer must never be silent. Call ``poll()`` from the thread that owns the socket."""

    _EVENTS = (zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
               | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)

    def __init__(self, sock: zmq.Socket, log=None, what: str = "peer"):
        self.sock, self.log, self.what = sock, log, what
        self.mon = sock.get_monitor_socket(self._EVENTS)
        self._fds: set = set()
        self.refused = self.disconnects = 0

    @property
    def peers(self) -> int:
        self.poll()
        return len(self._fds)

    def poll(self) -> None:
        from zmq.utils.monitor import recv_monitor_message
        while self.mon is not None and self.mon.poll(0):
            try:
                ev = recv_monitor_message(self.mon, zmq.NOBLOCK)
            except zmq.ZMQError:
                return
            kind, value, where = ev["event"], ev["value"], ev["endpoint"]
            if kind in (zmq.EVENT_ACCEPTED, zmq.EVENT_CONNECTED):
                self._fds.add(value)
            elif kind == zmq.EVENT_DISCONNECTED:
                self._fds.discard(value)
                self.disconnects += 1
            else:
                self.refused += 1
                why = {zmq.EVENT_HANDSHAKE_FAILED_AUTH: "authentication refused (key not in authorized_clients)",
                       zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake failed (wrong CURVE keys or not a ZeroMQ peer)"
                       }.get(kind, "handshake failed")
                if self.log is not None:
                    self.log.warn(f"refused a {self.what} on {where.decode(errors='replace')}: {why}",
                                  refused_so_far=self.refused)

    def close(self) -> None:
        if self.mon is not None:
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self.mon.close(0)
            self.mon = None
