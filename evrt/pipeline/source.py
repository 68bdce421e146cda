"""Event sources and the publishing side of the pipeline.

Every source (camera, DV network stream, recording replay, in-memory array) is an iterator of event
packets (``EVENT_DTYPE`` arrays, time-ordered). ``publish`` maps them onto the model's sensor and sends
them through one code path, so a replayed file exercises exactly what a live camera does.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

import numpy as np
import zmq

from ..errors import EvrtError
from ..events import as_events
from .protocol import END_OF_STREAM, EVENTS, RESET, encode

__all__ = ["SensorMap", "ArraySource", "FileSource", "InivationSource", "DvNetworkSource", "open_source",
           "list_cameras", "Publisher", "publish", "CAMERA_HELP"]

CAMERA_HELP = ("camera SPEC: auto | inivation[:SERIAL] | dv://HOST:PORT[?reconnect=0] | file:PATH[?speed=1.0|max]")
PACKET_US = 10_000  # replay packet length: what a USB camera typically delivers per read


# ------------------------------------------------------------------------------------- sensor mapping
@dataclass
class SensorMap:
    """Crop, flip and downsample events so a big sensor (320×240 … 1280×720) feeds a model trained on
    e.g. 128×128. Order: crop ``(x, y, w, h)`` (events outside are dropped), flip within the crop, then
    integer downsampling (``x // n``; events landing on the same pixel stay separate events, so counts
    add up like pooling a count frame), then ``fit`` (a ``geometry.FitPlan`` onto the model's grid).
    The work is done by ``evrt.geometry``; ``dropped`` counts the events lost so far."""
    crop: tuple | None = None
    downsample: int = 1
    flip_x: bool = False
    flip_y: bool = False
    fit: object = None  # geometry.FitPlan, planned for out_size() before the fit
    dropped: int = 0

    def __post_init__(self):
        if self.crop is not None:
            self.crop = tuple(int(v) for v in self.crop)
            if len(self.crop) != 4 or min(self.crop) < 0 or self.crop[2] < 1 or self.crop[3] < 1:
                raise EvrtError(f"--crop needs X,Y,W,H with W, H >= 1, got {self.crop}")
        if int(self.downsample) < 1:
            raise EvrtError(f"--downsample must be >= 1, got {self.downsample}")
        self.downsample = int(self.downsample)

    @property
    def manual_identity(self) -> bool:
        return self.crop is None and self.downsample == 1 and not self.flip_x and not self.flip_y

    @property
    def identity(self) -> bool:
        return self.manual_identity and (self.fit is None or self.fit.identity)

    def manual_size(self, sensor_size) -> tuple:
        """Size after crop and downsample, before the fit."""
        w, h = self.crop[2:] if self.crop else sensor_size
        return (int(w) + self.downsample - 1) // self.downsample, (int(h) + self.downsample - 1) // self.downsample

    def out_size(self, sensor_size) -> tuple:
        return tuple(self.fit.target) if self.fit is not None else self.manual_size(sensor_size)

    def __call__(self, ev: np.ndarray, sensor_size) -> np.ndarray:
        from .. import geometry as geo
        if self.identity:
            return ev
        if not self.manual_identity:
            if self.crop:
                ev, n = geo.crop(ev, self.crop)
                size = self.crop[2:]
            else:
                size = tuple(int(v) for v in sensor_size)
                ev, n = geo.drop_outside(ev, size) if (self.flip_x or self.flip_y) else (ev, 0)
            self.dropped += n
            ev = geo.downsample(geo.flip(ev, size, self.flip_x, self.flip_y), self.downsample)
        if self.fit is not None:
            ev, n = self.fit.apply(ev)
            self.dropped += n
        return ev


# -------------------------------------------------------------------------------------------- sources
class ArraySource:
    """An in-memory recording cut into packets of ``packet_us`` sensor time, optionally paced.
    ``speed``: 1.0 = real time, 2.0 = twice as fast, None = as fast as the consumer takes it."""

    def __init__(self, events, sensor_size=None, speed: float | None = None, packet_us: int = PACKET_US,
                 max_packet: int = 100_000, name: str = "array"):
        self.events = as_events(events)
        if sensor_size is None:
            sensor_size = (int(self.events["x"].max()) + 1, int(self.events["y"].max()) + 1) if len(self.events) else (0, 0)
        self.sensor_size = tuple(int(v) for v in sensor_size)
        self.speed, self.packet_us, self.max_packet, self.name = speed, int(packet_us), int(max_packet), name
        self.stop = threading.Event()  # publish() shares its stop event here

    def bounds(self) -> np.ndarray:
        """Packet boundaries: every ``packet_us`` of sensor time, big packets split at ``max_packet``."""
        t = self.events["t"]
        if not len(t):
            return np.zeros(1, np.int64)
        # packet index of every event, so the work is bounded by the events whatever gaps the clock has
        k = (t - t[0]) // np.uint64(self.packet_us)
        b = np.concatenate([[0], np.flatnonzero(k[1:] != k[:-1]) + 1, [len(t)]]).astype(np.int64)
        split = [np.arange(lo, hi, self.max_packet) for lo, hi in zip(b[:-1], b[1:])]
        return np.concatenate(split + [[len(t)]]).astype(np.int64)

    def __iter__(self):
        b = self.bounds()
        t = self.events["t"]
        wall0 = time.monotonic()
        for lo, hi in zip(b[:-1], b[1:]):
            pkt = self.events[lo:hi]
            if self.speed:
                # a packet is due when the sensor clock reaches its last event
                due = wall0 + (int(t[hi - 1]) - int(t[0])) / 1e6 / self.speed
                delay = due - time.monotonic()
                if delay > 0 and self.stop.wait(delay):  # a gap in the recording must not delay a stop
                    return
            yield pkt

    def close(self):
        pass


def load_recording(path: str, log=None):
    """(events, sensor_size) of any recording ``evrt.formats.read_recording`` reads, cleaned for
    streaming: events outside the sensor or going back in time are dropped (and reported), because a
    live framer needs time order. ``evrt replay`` should load through here too, so that in-process and
    over-socket replays see the same events."""
    from ..events import validate
    from ..formats import read_recording

    rec = read_recording(path)
    size = tuple(int(v) for v in rec.sensor_size) if rec.sensor_size else None
    ev, report = validate(rec.events, size, policy="drop")
    if not report.ok and log is not None:
        log.warn(f"{path}: {report}")
    return ev, size


class FileSource(ArraySource):
    def __init__(self, path: str, speed: float | None = 1.0, packet_us: int = PACKET_US, log=None):
        if not os.path.exists(path):
            raise EvrtError(f"recording {path} does not exist")
        ev, size = load_recording(path, log)
        super().__init__(ev, size, speed=speed, packet_us=packet_us, name=f"file:{path}")


def _dv():
    from .dvio import dv_module
    return dv_module(required=False)


def _no_dv():
    from .dvio import NO_DV
    return EvrtError(NO_DV)


def _dv_packets(reader, name, stop: threading.Event, idle_s=0.001):
    """Packets from a dv-processing reader (a camera or a NetworkReader) as EVENT_DTYPE arrays, until
    the reader stops running."""
    from .dvio import from_store
    while reader.isRunning():
        if stop.is_set():
            return
        batch = reader.getNextEventBatch()
        if batch is None:
            stop.wait(idle_s)  # the driver has nothing yet; do not spin a shared core
            continue
        ev = from_store(batch)
        if len(ev):
            yield ev


class InivationSource:
    """A USB camera through dv_processing.io.camera (dv-processing 2.0)."""

    def __init__(self, serial: str = "", dv=None):
        from .dvio import open_camera
        dv = dv or _dv()
        if dv is None:
            raise _no_dv()
        self.cam = open_camera(serial, dv)
        if not self.cam.isEventStreamAvailable():
            raise EvrtError(f"camera {self.cam.getCameraName()} provides no event stream")
        self.name = f"inivation:{self.cam.getCameraName()}"
        self.stop = threading.Event()
        self.sensor_size = tuple(int(v) for v in self.cam.getEventResolution())

    def __iter__(self):
        yield from _dv_packets(self.cam, self.name, self.stop)
        if not self.stop.is_set():
            raise EvrtError(f"{self.name}: the camera stopped sending (unplugged?)")

    def close(self):
        self.cam = None


class DvNetworkSource:
    """A DV network stream (dv-processing's NetworkWriter, DV's "net" output). When the sender goes away
    the source reports it (``on_disconnect``), retries every ``retry_s`` until the sender is back or the
    source is stopped, and reports that too (``on_reconnect``); ``publish`` turns these into
    END_OF_STREAM and RESET so the classifier finishes the old stream and starts the new one fresh.
    ``reconnect=False``: the stream ending is an error, as for a camera."""

    def __init__(self, host: str, port: int, log=None, reconnect: bool = True, retry_s: float = 0.5):
        dv = _dv()
        if dv is None:
            raise _no_dv()
        self.dv, self.host, self.port, self.log = dv, host, int(port), log
        self.name = f"dv://{host}:{port}"
        self.reconnect, self.retry_s = reconnect, float(retry_s)
        self.stop = threading.Event()
        self.on_disconnect = self.on_reconnect = None
        self.reconnects = 0
        self.reader = self._connect(first=True)
        if not self.reader.isEventStreamAvailable():
            raise EvrtError(f"{self.name} carries no event stream")
        res = self.reader.getEventResolution()
        self.sensor_size = tuple(int(v) for v in res) if res is not None else (0, 0)

    def _connect(self, first: bool = False):
        from .dvio import first_line
        try:
            return self.dv.io.NetworkReader(self.host, self.port)
        except Exception as exc:
            if first:
                raise EvrtError(f"cannot connect to DV stream {self.name}: {first_line(exc)}") from None
            return None

    def __iter__(self):
        while True:
            yield from _dv_packets(self.reader, self.name, self.stop)
            if self.stop.is_set():
                return
            if not self.reconnect:
                raise EvrtError(f"{self.name}: the stream stopped (sender closed)")
            if self.log:
                self.log.warn(f"{self.name}: the sender stopped; reconnecting every {self.retry_s:g} s")
            if self.on_disconnect:
                self.on_disconnect()
            self.reader = None
            while self.reader is None:
                if self.stop.wait(self.retry_s):
                    return
                self.reader = self._connect()
            self.reconnects += 1
            res = self.reader.getEventResolution()
            size = tuple(int(v) for v in res) if res is not None else (0, 0)
            if self.log:
                self.log.info(f"{self.name}: reconnected", reconnects=self.reconnects,
                              sensor=f"{size[0]}x{size[1]}")
            if size != self.sensor_size and self.log:
                self.log.warn(f"{self.name}: the sensor changed from {self.sensor_size} to {size} on reconnect")
            if self.on_reconnect:
                self.on_reconnect()

    def close(self):
        self.reader = None


def list_cameras() -> list:
    """Connected iniVation cameras as "MODEL SERIAL" strings."""
    from .dvio import discover
    dv = _dv()
    if dv is None:
        raise _no_dv()
    return [f"{model} {serial}" for model, serial in discover(dv)]


def open_source(spec: str, log=None):
    """A source from a camera SPEC (see ``CAMERA_HELP``)."""
    spec = spec.strip()
    if spec.startswith("file:"):
        path, _, query = spec[5:].partition("?")
        speed = parse_qs(query).get("speed", ["1.0"])[0]
        try:
            speed = None if speed == "max" else float(speed)
        except ValueError:
            raise EvrtError(f"speed={speed!r} in {spec!r}: use a number (1.0 = real time) or max") from None
        if speed is not None and speed <= 0:
            raise EvrtError(f"speed must be > 0 or max, got {speed}")
        return FileSource(path, speed=speed, log=log)
    if spec.startswith("dv://"):
        addr, _, query = spec[5:].partition("?")
        host, _, port = addr.rpartition(":")
        if not host or not port.isdigit():
            raise EvrtError(f"{spec!r}: expected dv://HOST:PORT[?reconnect=0]")
        reconnect = parse_qs(query).get("reconnect", ["1"])[0] not in ("0", "no", "false")
        return DvNetworkSource(host, int(port), log=log, reconnect=reconnect)
    if spec == "inivation" or spec.startswith("inivation:"):
        return InivationSource(spec.partition(":")[2])
    if spec == "auto":
        dv = _dv()
        if dv is None:
            raise EvrtError("--camera auto found no camera: looked for iniVation USB cameras through "
                            'dv-processing, which is not installed (pip install "evrt[camera]"); or replay a '
                            "recording with --camera file:PATH")
        from .dvio import discover
        found = discover(dv)
        if found:
            if log:
                log.info("cameras found: " + ", ".join(f"{m} {s}" for m, s in found) + f"; opening {found[0][1]}")
            return InivationSource(found[0][1], dv)
        raise EvrtError("--camera auto found no camera: looked for iniVation USB cameras (DVS128, DAVIS, "
                        f"DVXplorer) through dv-processing {getattr(dv, '__version__', '')} "
                        "(dv_processing.io.camera.discover), found 0; connect one, stream one with "
                        "--camera dv://HOST:PORT, or replay a recording with --camera file:PATH")
    raise EvrtError(f"unknown camera {spec!r}; {CAMERA_HELP}")


# -------------------------------------------------------------------------------------------- publish
class Publisher:
    """Sends one stream on a PUB or PUSH socket. A stream id (random per Publisher, so a restarted
    source is a new stream to every receiver) and a sequence number (+1 per message, any kind) let
    receivers detect restarts and count lost messages."""

    WAIT_REPORT_S = 30.0  # a PUSH waiting for a consumer says so this often

    def __init__(self, sock: zmq.Socket, sensor_size=(0, 0), stream_id: int | None = None,
                 stop: threading.Event | None = None, watch=None, log=None):
        self.sock = sock
        self.watch, self.log = watch, log  # PeerWatch (logs refused peers), Log (says why we wait)
        self.sensor_size = tuple(int(v) for v in sensor_size)
        self.stream_id = int.from_bytes(os.urandom(4), "little") if stream_id is None else int(stream_id)
        self.seq = 0
        self.stop = stop or threading.Event()
        self.sent_messages = self.sent_events = 0

    def _send(self, frames, final: bool = False) -> bool:
        # PUB never blocks (it drops at the HWM); PUSH blocks when every peer is full or none is
        # connected: wait in short slices so a stop request is still honoured. The final message of a
        # stream (END_OF_STREAM) waits like any other until a stop is requested, then for one second at
        # most (a busy consumer, e.g. stepping through a clock jump, must not lose it).
        deadline = None
        waited = time.monotonic()
        while final or not self.stop.is_set():
            if final and deadline is None and self.stop.is_set():
                deadline = time.monotonic() + 1.0
            if self.watch is not None:
                self.watch.poll()
            if self.log is not None and time.monotonic() - waited > self.WAIT_REPORT_S:
                waited = time.monotonic()
                self.log.info("waiting for a consumer to take messages (PUSH keeps them; Ctrl-C stops)")
            if self.sock.poll(100, zmq.POLLOUT):
                self.sock.send_multipart(frames, copy=False)
                self.seq += 1
                self.sent_messages += 1
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
        return False

    def send_events(self, ev: np.ndarray, start_us: int | None = None, end_us: int | None = None) -> bool:
        if start_us is None:
            start_us = int(ev["t"][0]) if len(ev) else 0
        if end_us is None:
            end_us = int(ev["t"][-1]) + 1 if len(ev) else start_us
        ok = self._send(encode(EVENTS, self.stream_id, self.seq, ev, start_us, end_us, self.sensor_size))
        if ok:
            self.sent_events += len(ev)
        return ok

    def send_reset(self) -> bool:
        return self._send(encode(RESET, self.stream_id, self.seq, sensor_size=self.sensor_size))

    def send_end(self) -> bool:
        return self._send(encode(END_OF_STREAM, self.stream_id, self.seq, sensor_size=self.sensor_size), final=True)


def publish(source, pub: Publisher, mapping: SensorMap | None = None, log=None, metrics=None,
            end_of_stream: bool = True, record=None) -> None:
    """Map and send every packet of ``source`` until it ends or ``pub.stop`` is set, then (optionally)
    send END_OF_STREAM so consumers flush their open window. ``record``: an object with ``write(events)``
    (e.g. ``dvio.AedatRecorder``) that gets every mapped packet that was sent."""
    mapping = mapping or SensorMap()
    if isinstance(getattr(source, "stop", None), threading.Event):
        source.stop = pub.stop
    if hasattr(source, "on_reconnect"):  # a network source that outlives its sender
        source.on_disconnect, source.on_reconnect = pub.send_end, pub.send_reset
    in_size = getattr(source, "sensor_size", (0, 0))
    pub.sensor_size = mapping.out_size(in_size) if in_size and min(in_size) > 0 else pub.sensor_size
    if log:
        log.info(f"publishing {getattr(source, 'name', 'source')}", sensor=f"{in_size[0]}x{in_size[1]}",
                 mapped=f"{pub.sensor_size[0]}x{pub.sensor_size[1]}", stream_id=pub.stream_id)
    try:
        for pkt in source:
            if pub.stop.is_set():
                break
            t0, t1 = (int(pkt["t"][0]), int(pkt["t"][-1]) + 1) if len(pkt) else (0, 0)
            ev = mapping(pkt, in_size)
            if not pub.send_events(ev, t0, t1):
                break
            if record is not None:
                record.write(ev)
            if metrics is not None:
                metrics.events_in += len(pkt)
                metrics.messages_in += 1
                if log and metrics.due():
                    metrics.report(log)
    except EvrtError:
        if end_of_stream:  # camera unplugged / sender gone: consumers still get to finish their window
            pub.send_end()
        raise
    finally:
        close = getattr(source, "close", None)
        if close:
            close()
    if end_of_stream:
        pub.send_end()
