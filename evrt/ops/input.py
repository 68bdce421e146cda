"""The input op: one step's events (or a reference frame) onto the model's input grid."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import geometry
from ..errors import GraphError
from .base import Attr, Kind, OpImpl, need, op_type, positive


@dataclass
class EventBatch:
    """One step's raw events as the first layer consumes them (already in the model's input grid)."""
    ys: np.ndarray
    xs: np.ndarray
    cs: np.ndarray

    def __len__(self) -> int:
        return len(self.ys)


# Events per input element above which a step's events go on as their count frame instead of a list.
# The first conv's event path costs ~9·Cout adds per event at ~3.5 G/s (short weight rows); its dense
# path H·W·Cin·9·Cout MACs at ~10 G/s: the two meet at ~0.3 events per element whatever the kernel and
# Cout (measured, 3x3 2->32 at 128x128, 16 steps: 6.2 k events/step 11.4 ms listed vs 16.3 framed,
# 21 k events/step 37 ms vs 17.5).
FRAME_ABOVE = 0.3


def _count_frame(ev, width, height, dtype):
    flat = (ev["on"].astype(np.int64) * height + ev["y"]) * width + ev["x"]
    return np.bincount(flat, minlength=2 * height * width).astype(dtype).reshape(2, height, width)


@op_type("events_in")
class EventsIn(OpImpl):
    """Step input. Events are mapped onto the model's input grid (optionally binned by `bin`); a frame
    given in the reference layout (C, H, W) is transposed to channels-last.

    `bin` divides event coordinates (the 1/bin² of average pooling is folded into the first conv's
    weights); `frame_channels` is the channel count a reference frame carries (extra channels that the
    fold removed are checked and dropped); `resize="antialias"` makes a real-valued resized frame."""
    kind = Kind.INPUT
    attrs = {
        "width": Attr(int, check=positive), "height": Attr(int, check=positive),
        "channels": Attr(int, 2, check=lambda v: None if v >= 2 else "must be >= 2"),  # polarity = channel index
        "sensor_width": Attr(int, check=positive), "sensor_height": Attr(int, check=positive),
        "bin": Attr(int, 1, check=positive),
        "frame_channels": Attr(int, None, check=positive),
        "resize": Attr(str, None, choices=("antialias",)),
    }

    @classmethod
    def shape(cls, a, p, ins):
        need(ins == [None], "an input op reads the graph input 'events'")
        b = a["bin"]
        if a["resize"] is None:   # every event inside the sensor must land inside the grid
            need(-(-a["sensor_width"] // b) <= a["width"] and -(-a["sensor_height"] // b) <= a["height"],
                 f"a {a['sensor_width']}x{a['sensor_height']} sensor binned by {b} does not fit the "
                 f"{a['width']}x{a['height']} grid")
        else:                     # the resize halves the sensor
            need((a["sensor_width"] // 2, a["sensor_height"] // 2) == (a["width"], a["height"]),
                 "an antialiased resize halves the sensor onto the grid")
        need(a["frame_channels"] is None or a["frame_channels"] >= a["channels"], "frame_channels < channels")
        return (a["height"], a["width"], a["channels"])

    def run(self, inputs, ctx):
        x = inputs[0]
        st = self.stats
        if isinstance(x, np.ndarray) and x.dtype.names is not None:
            sw, sh = self.a["sensor_width"], self.a["sensor_height"]
            x, dropped = geometry.drop_outside(x, (sw, sh))  # the one rule of what is outside a sensor
            ctx.dropped_events += dropped
            if self.a["resize"] == "antialias":
                return self._resized_frame(x, sw, sh)
            b = self.a["bin"]   # geometry.downsample's rule, without building a new event array per step
            ys = x["y"].astype(np.int64) // b
            xs = x["x"].astype(np.int64) // b
            cs = x["on"].astype(np.int64)
            st.in_nonzero = len(ys)
            if len(ys) < FRAME_ABOVE * self.out.size:
                return EventBatch(ys, xs, cs)
            # many events: their count frame (the first conv then takes its dense path; same ACs)
            h, w, c = self.out_shape
            counts = np.bincount((ys * w + xs) * c + cs, minlength=h * w * c)
            self.out.reshape(-1)[:] = counts
            return self.out
        frame = np.asarray(x)
        c = self.out_shape[2]
        if frame.ndim == 3 and frame.shape[1:] == (self.a["sensor_height"], self.a["sensor_width"]) \
                and frame.shape[1:] != self.out_shape[:2]:
            raise GraphError(f"{self.name}: give frames already resized to {self.out_shape[:2]} "
                             f"(the reference input), or give events")
        fc = self.attr("frame_channels", c)
        if frame.ndim != 3 or frame.shape[0] != fc or frame.shape[1:] != self.out_shape[:2]:
            raise GraphError(f"{self.name}: expected a frame of shape {(fc,) + self.out_shape[:2]} "
                             f"(C, H, W) or an event array, got {frame.shape}")
        if fc > c:
            # The sum channel was folded into the first conv: it must be the sum of the others.
            extra = frame[c:]
            if not np.allclose(extra, frame[:c].sum(axis=0, keepdims=True)[: fc - c], rtol=1e-6, atol=1e-6):
                raise GraphError(f"{self.name}: frame channel {c} is not the sum of channels 0..{c-1}")
            frame = frame[:c]
        self.out[...] = frame.transpose(1, 2, 0)
        st.in_nonzero = int(np.count_nonzero(self.out))
        return self.out

    def _resized_frame(self, ev, sw, sh):
        """Antialiased resize (SpikingResformer): the input is real-valued, so the first layer does
        MACs on the resized frame. Resized in float32 as the reference does."""
        from ..framing import resize_frames
        frame = resize_frames(_count_frame(ev, sw, sh, np.float32), "antialias")
        self.out[...] = frame.transpose(1, 2, 0)
        self.stats.in_nonzero = int(np.count_nonzero(self.out))
        return self.out
