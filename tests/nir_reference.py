"""Reference side of the NIR tests (dev extra: nir, sinabs, tonic): the NIR paper's N-MNIST CNN run by
sinabs exactly as the paper's script frames it (tonic ToFrame, 1 ms windows, sinabs.nir.from_nir)."""
from __future__ import annotations

import numpy as np


def tonic_frames(path, time_window_us=1000):
    import tonic
    ev = tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)
    to_frame = tonic.transforms.ToFrame(sensor_size=tonic.datasets.NMNIST.sensor_size, time_window=time_window_us)
    return to_frame(ev)


def sinabs_run(graph, frames, double=False):
    """-> (summed output (10,), {layer: spikes (T, ...)}) for one sample; frames (T, 2, 34, 34)."""
    import torch
    import sinabs
    from sinabs.nir import from_nir
    model = from_nir(graph, batch_size=1)
    if double:
        # sinabs' spike function returns float32 counts (small integers, exact); the next layer casts
        # them back so that every membrane and synaptic sum is float64
        model = model.double()
        for mod in model.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                mod.register_forward_pre_hook(lambda m, args: tuple(a.double() for a in args))
    layers = {}
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, sinabs.layers.IAFSqueeze):
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, name=name: layers.__setitem__(name, o.detach().numpy().copy())))
    for mod in model.modules():
        if hasattr(mod, "reset_states"):
            mod.reset_states()
    x = torch.as_tensor(np.asarray(frames), dtype=torch.float64 if double else torch.float32)
    with torch.no_grad():
        out = model(x)
        if isinstance(out, tuple):      # nirtorch >= 2 returns (output, state)
            out = out[0]
    for h in hooks:
        h.remove()
    return out.numpy().reshape(len(frames), -1).sum(axis=0), layers


def nmnist_recordings(root):
    """[(path, label)] of the N-MNIST layout `root/<digit>/<id>.bin`, sorted by recording id (the order the
    reports and docs/NIR.md list them in). Only a listing: evrt decodes with `read_events`."""
    from pathlib import Path
    items = [(p, int(p.parent.name)) for p in Path(root).glob("[0-9]/*.bin")]
    return sorted(items, key=lambda it: it[0].stem)


def read_events(path):
    """A recording's events through evrt's shared reader (evrt.formats, the `.bin` format)."""
    from evrt.formats import read_recording
    return read_recording(path).events
