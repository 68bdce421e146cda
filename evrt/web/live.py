"""What the live page shows, kept by the threads that produce it and read by the web thread.

The classifier thread and the source thread only store references and a few numbers here (under a
lock held for microseconds); everything that costs something — the event image, the per-layer rates,
the JSON — is computed by ``snapshot()``, which the web thread calls at its own bounded rate. So a
viewer, slow or not, never makes the classifier wait, and memory stays bounded: the latest packets
(``image_us`` of sensor time, at most ``max_packets``), the latest ``timeline`` predictions.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from ..counters import PJ_PER_AC, PJ_PER_MAC
from ..streaming import softmax

__all__ = ["LiveState"]


class LiveState:
    def __init__(self, sensor_size=(0, 0), classes=(), title: str = "evrt", image_us: int = 50_000,
                 timeline: int = 150, max_packets: int = 256, layer_every_s: float = 0.25, clock=time.monotonic):
        self.lock = threading.Lock()
        self.title = title
        self.sensor_size = tuple(int(v) for v in sensor_size)
        self.classes = list(classes)
        self.image_us = int(image_us)
        self.packets: deque = deque(maxlen=max_packets)
        self.preds: deque = deque(maxlen=timeline)
        self.version = 0
        self.clock = clock
        self.t0 = clock()
        self.events_total = 0
        self.session = None
        self.layer_every_s = layer_every_s
        self._layer_snaps: deque = deque(maxlen=2)  # (stream µs, steps, {name: (type, neurons, spikes, acs, macs)})
        self._last_layer_snap = -1e9
        self.metrics = None      # a pipeline Metrics (serve) for drops and latency percentiles
        self.extra_drops = {}    # e.g. watch's malformed-message count
        self.status = "waiting for data"

    # ------------------------------------------------------------------ producer side (cheap, any thread)
    def events(self, ev) -> None:
        """A packet of (mapped) events as they were sent: kept by reference."""
        if len(ev):
            with self.lock:
                self.packets.append(ev)
                self.events_total += len(ev)
                self.version += 1

    write = events  # so a LiveState can stand where publish() takes a recorder

    def prediction(self, p) -> None:
        """A Prediction (classifier thread, or watch's receive loop)."""
        now = self.clock()
        snap = None
        if self.session is not None and now - self._last_layer_snap >= self.layer_every_s:
            self._last_layer_snap = now
            rep = self.session.report()  # references to the live counters; copied into tuples here
            snap = (int(p.end_us), rep.steps, {l.name: (l.type, l.neurons, l.spikes, l.acs, l.macs)
                                               for l in rep.layers})
        with self.lock:
            self.preds.append((p.step, p.start_us, p.end_us, p.n_events, p.class_index, p.class_name, p.confidence,
                               p.logits, p.latency_ms, p.acs, p.macs))
            if 0 <= p.class_index and p.class_index >= len(self.classes):
                self.classes += [str(i) for i in range(len(self.classes), p.class_index + 1)]
            if 0 <= p.class_index < len(self.classes) and self.classes[p.class_index] != p.class_name:
                self.classes[p.class_index] = p.class_name
            if snap is not None:
                self._layer_snaps.append(snap)
            self.status = "live"
            self.version += 1

    def end_of_stream(self, info: dict | None = None) -> None:
        with self.lock:
            self.status = "end of stream"
            self.version += 1

    # ---------------------------------------------------------------------------- web side (its thread)
    def image(self) -> tuple:
        """(width, height, bytes): per pixel 0 none, 1 ON only, 2 OFF only, 3 both, over the last
        ``image_us`` of sensor time."""
        with self.lock:
            packets = list(self.packets)
        w, h = self.sensor_size
        if not packets:
            return w, h, bytes(w * h)
        t_end = int(packets[-1]["t"][-1])
        keep = []
        for pkt in reversed(packets):
            keep.append(pkt)
            if int(pkt["t"][0]) <= t_end - self.image_us:
                break
        ev = np.concatenate(keep[::-1])
        ev = ev[ev["t"] > t_end - self.image_us] if t_end > self.image_us else ev
        if w < 1 or h < 1:
            w, h = int(ev["x"].max()) + 1, int(ev["y"].max()) + 1
        x, y = ev["x"].astype(np.int64), ev["y"].astype(np.int64)
        ok = (x < w) & (y < h)
        idx = y[ok] * w + x[ok]
        on = ev["on"][ok]
        img = np.zeros(w * h, np.uint8)
        img[idx[on]] |= 1
        img[idx[~on]] |= 2
        return w, h, img.tobytes()

    def snapshot(self) -> dict:
        """Everything but the image, as plain JSON-able values."""
        with self.lock:
            preds = list(self.preds)
            snaps = list(self._layer_snaps)
            classes = list(self.classes)
            status, events_total = self.status, self.events_total
        out = {"type": "state", "title": self.title, "status": status, "sensor": list(self.sensor_size),
               "classes": classes, "events_total": events_total, "uptime_s": round(self.clock() - self.t0, 1)}
        if preds:
            last = preds[-1]
            probs = softmax(np.asarray(last[7], np.float64))
            out["now"] = {"step": last[0], "t_s": last[2] / 1e6, "class_index": last[4], "class_name": last[5],
                          "confidence": round(float(last[6]), 4), "probs": [round(float(v), 4) for v in probs],
                          "n_events": last[3], "latency_ms": round(float(last[8]), 3)}
            out["timeline"] = {"t_s": [round(p[2] / 1e6, 3) for p in preds],
                               "probs": [[round(float(v), 3) for v in softmax(np.asarray(p[7], np.float64))]
                                         for p in preds]}
            lat = np.array([p[8] for p in preds], float)
            out["latency_ms"] = {"last": round(float(lat[-1]), 3), "p50": round(float(np.percentile(lat, 50)), 3),
                                 "p99": round(float(np.percentile(lat, 99)), 3)}
            span_us = preds[-1][2] - preds[0][1]
            if len(preds) > 1 and span_us > 0:
                acs, macs = sum(p[9] for p in preds), sum(p[10] for p in preds)
                sec = span_us / 1e6
                out["rates"] = {"acs_per_s": acs / sec, "macs_per_s": macs / sec,
                                "energy_uj_per_s": (acs * PJ_PER_AC + macs * PJ_PER_MAC) / 1e6 / sec,
                                "steps_per_s": len(preds) / sec, "events_per_s": sum(p[3] for p in preds) / sec}
        if len(snaps) == 2:
            (t0, s0, a), (t1, s1, b) = snaps
            sec, steps = max(t1 - t0, 1) / 1e6, max(s1 - s0, 1)
            rows = []
            for name, (typ, neurons, spikes, acs, macs) in b.items():
                pa = a.get(name, (typ, neurons, 0, 0, 0))
                if not neurons and not acs and not macs:
                    continue
                rows.append({"name": name, "type": typ,
                             "rate": (spikes - pa[2]) / (neurons * steps) if neurons else None,
                             "acs_per_s": (acs - pa[3]) / sec, "macs_per_s": (macs - pa[4]) / sec})
            out["layers"] = rows
        drops = dict(self.extra_drops)
        m = self.metrics
        if m is not None:
            drops.update(dict(m.drops), lost_messages=m.lost)  # dict(): one C-level copy, safe against the writer
            out["queue_depth"] = m.queue_depth
        if self.session is not None:
            drops["events_outside_sensor"] = int(getattr(self.session, "dropped_events", 0))
        out["drops"] = drops
        return out
