"""The dv-processing side of the pipeline (optional extra ``[camera]``, dv-processing 2.0.x).

Everything evrt asks of dv-processing goes through this module, so the API it relies on is in one
place and tested against the real package: USB discovery and opening (``dv_processing.io.camera``),
the DV network reader, event batches as NumPy, and the AEDAT4 writer used by ``--record``.
Importing this module does not import dv-processing; each function does, and says how to install
it when it is missing.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from ..errors import EvrtError
from ..events import make_events

__all__ = ["NO_DV", "dv_module", "first_line", "discover", "open_camera", "to_store", "from_store",
           "AedatRecorder"]

NO_DV = ("the dv-processing package is not installed (needed for iniVation cameras, dv:// streams and "
         '--record); install it with: pip install "evrt[camera]"')


def dv_module(required: bool = True):
    """The ``dv_processing`` module, or None / a one-line EvrtError when it is not installed."""
    try:
        import dv_processing
    except ImportError:
        if required:
            raise EvrtError(NO_DV) from None
        return None
    return dv_processing


def first_line(exc: BaseException) -> str:
    """dv-processing's C++ errors carry a source location line and a stack trace: keep the message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    pick = next((ln for ln in lines if not ln.startswith("/")), lines[-1] if lines else type(exc).__name__)
    if pick.startswith("RuntimeError:"):
        pick = pick.split(": ", 1)[1]
    return pick.split(" [system:")[0]  # boost's "[system:111 at /path/to/header.hpp:588 in ...]"


def discover(dv=None) -> list:
    """Connected iniVation USB cameras as (model, serial) pairs."""
    dv = dv or dv_module()
    out = []
    for d in dv.io.camera.discover():
        model = getattr(d.cameraModel, "name", str(d.cameraModel))
        out.append((str(model), str(d.serialNumber)))
    return out


def open_camera(serial: str = "", dv=None):
    """Open a camera by serial number (or the first one found)."""
    dv = dv or dv_module()
    try:
        return dv.io.camera.open(serial) if serial else dv.io.camera.open()
    except IndexError:  # open() with nothing connected indexes an empty device list
        raise EvrtError("no iniVation camera is connected (dv_processing.io.camera.open found none)") from None
    except Exception as exc:
        raise EvrtError(f"cannot open iniVation camera {serial or '(first found)'}: {first_line(exc)}") from None


def from_store(store) -> np.ndarray:
    """A dv EventStore (or None) -> EVENT_DTYPE array."""
    if store is None:
        return make_events([], [], [], [])
    a = store.numpy()
    return make_events(a["timestamp"], a["x"], a["y"], a["polarity"])


def to_store(ev: np.ndarray, dv=None):
    """EVENT_DTYPE array -> dv EventStore. dv-processing 2.0 has no bulk constructor from NumPy, so this
    pushes event by event (about 1.5 µs an event)."""
    dv = dv or dv_module()
    store = dv.EventStore()
    push = store.push_back
    for t, x, y, p in zip(ev["t"].tolist(), ev["x"].tolist(), ev["y"].tolist(), ev["on"].tolist()):
        push(t, x, y, bool(p))
    return store


class AedatRecorder:
    """Writes the events evrt streams to an AEDAT4 file (events only) with dv-processing's
    MonoCameraWriter. AEDAT4 needs time-ordered packets: a packet that starts before the last written
    event (a restarted source) is skipped and counted in ``skipped_events``."""

    def __init__(self, path: str, sensor_size, camera_name: str = "evrt", log=None):
        dv = dv_module()
        path = os.fspath(path)
        if os.path.exists(path):
            raise EvrtError(f"--record {path}: the file exists; evrt does not overwrite files, choose another name")
        if not path.lower().endswith(".aedat4"):
            raise EvrtError(f"--record {path}: the recording is written as AEDAT4; name it *.aedat4")
        w, h = (int(v) for v in sensor_size)
        if w < 1 or h < 1:
            raise EvrtError(f"--record {path}: the source reports no sensor size, so no AEDAT4 header can be written")
        self.dv, self.path, self.log = dv, path, log
        self.sensor_size = (w, h)
        try:
            self.writer = dv.io.MonoCameraWriter(path, dv.io.MonoCameraWriter.EventOnlyConfig(camera_name, (w, h)))
        except Exception as exc:
            raise EvrtError(f"--record {path}: {first_line(exc)}") from None
        self.last_t = -1
        self.written_events = self.skipped_events = 0
        self._lock = threading.Lock()  # the source thread writes while the main thread may close

    def write(self, ev: np.ndarray) -> None:
        with self._lock:
            self._write(ev)

    def _write(self, ev: np.ndarray) -> None:
        if self.writer is None or not len(ev):
            return
        if int(ev["t"][0]) < self.last_t:
            self.skipped_events += len(ev)
            if self.log and self.skipped_events == len(ev):
                self.log.warn(f"--record {self.path}: time went backwards (source restarted); skipping such packets")
            return
        self.writer.writeEvents(to_store(ev, self.dv))
        self.last_t = int(ev["t"][-1])
        self.written_events += len(ev)

    def close(self) -> None:
        # dropping the writer flushes and closes the file (the writer has no close method)
        with self._lock:
            self.writer = None
