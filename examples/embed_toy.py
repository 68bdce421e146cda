"""Embedding evrt as a library: build a small spiking model in code, stream events through it one
timestep at a time, and read the per-layer counters. No checkpoint, no torch.

    python examples/embed_toy.py
"""
import numpy as np

from evrt.engine import Session
from evrt.events import make_events
from evrt.framing import StreamFramer
from evrt.toy import toy_graph


def fake_camera(seconds=0.5, rate=200_000, sensor=(32, 32), seed=0):
    """A moving blob of events on a 32x32 sensor, delivered in 10 ms packets."""
    rng = np.random.default_rng(seed)
    for start in range(0, int(seconds * 1e6), 10_000):
        n = int(rate * 0.01)
        cx = 16 + 10 * np.sin(start / 1e5)
        x = np.clip(rng.normal(cx, 3, n), 0, sensor[0] - 1).astype(int)
        y = np.clip(rng.normal(16, 3, n), 0, sensor[1] - 1).astype(int)
        yield make_events(np.sort(rng.integers(start, start + 10_000, n)), x, y, rng.integers(0, 2, n))


def main():
    graph = toy_graph(seed=0, T=8)
    for precision in ("float64", "float32"):
        sess = Session(graph, precision=precision, mode="continuous", reset_every=None)
        framer = StreamFramer(count=2000)
        steps = 0
        for packet in fake_camera():
            for window in framer.push(packet):
                out = sess.step(window)
                steps += 1
        print(f"[{precision}] {steps} steps, last prediction: {sess.class_name(out.class_index)} "
              f"(readout {np.round(out.readout, 3)})")
    print(sess.report().to_text())


if __name__ == "__main__":
    main()
