"""A real dv-processing NetworkWriter serving a recording on 127.0.0.1, run as its own process so a test
can stop it (kill) and start it again. Usage: python dv_writer.py PORT RECORDING START_US END_US

Waits for the first client, writes the cut in 10 ms packets, prints "sent N" and then waits on stdin
(the test kills it or closes stdin). It exits with os._exit: destroying a NetworkWriter with a client
still connected blocks in dv-processing 2.0.4.
"""
import os
import sys
import time

import dv_processing as dv
import numpy as np

from evrt.formats import read_recording
from evrt.pipeline.dvio import to_store


def main():
    port, path, start_us, end_us = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rec = read_recording(path)
    ev = rec.events[(rec.events["t"] >= start_us) & (rec.events["t"] < end_us)]
    stream = dv.io.Stream.EventStream(0, "events", "evrt-test-writer", tuple(int(v) for v in rec.sensor_size))
    writer = dv.io.NetworkWriter("127.0.0.1", port, stream)
    print("listening", flush=True)
    deadline = time.monotonic() + 60
    while writer.getClientCount() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    edges = np.searchsorted(ev["t"], np.arange(start_us, end_us + 10_000, 10_000).astype(np.uint64))
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi > lo:
            writer.writeEvents(to_store(ev[lo:hi]))
    while writer.getQueuedPacketCount() and time.monotonic() < deadline:
        time.sleep(0.01)
    print(f"sent {len(ev)}", flush=True)
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    main()
