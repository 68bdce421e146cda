"""A small model built in code (no checkpoint): two spiking conv layers and one SDSA block with random
weights. Used by tests, examples and the pipeline tests, and as a template for building graphs by hand."""
from __future__ import annotations

import numpy as np

from .graph import Graph, GraphBuilder


def toy_graph(seed: int = 0, T: int = 8, sensor: tuple[int, int] = (32, 32), channels: int = 16,
              num_classes: int = 4) -> Graph:
    rng = np.random.default_rng(seed)
    g = GraphBuilder()
    width, height = sensor
    c1, c2 = channels // 2, channels

    def conv(cout, cin, gain):
        return rng.normal(0, gain / np.sqrt(cin * 9), (cout, cin, 3, 3))

    x = g.input(T=T, width=width, height=height)      # the input op and the clip framing, together
    y = g.conv_bn("conv1", x, conv(c1, 2, 3.0), rng.normal(0.1, 0.1, c1), None, pad=1, in_kind="events")
    s = g.lif("lif1", y, ref_shape=[c1, height, width])
    s = g.add("pool1", "maxpool", [s], k=3, stride=2, pad=1)
    y = g.conv_bn("conv2", s, conv(c2, c1, 4.0), rng.normal(0.2, 0.1, c2), None, stride=2, pad=1)
    h, w, _ = g.shape(y)                               # the builder infers every op's shape
    s = g.lif("lif2", y, ref_shape=[c2, h, w])
    tokens = g.add("tokens", "reshape", [s], shape=[h * w, c2])
    qkv = []
    for name in ("q", "k", "v"):
        y = g.linear_bn(f"attn.{name}", tokens, rng.normal(0, 3.0 / np.sqrt(c2), (c2, c2)),
                        rng.normal(0.3, 0.2, c2), None)
        qkv.append(g.lif(f"attn.{name}_lif", y, ref_shape=[c2, h * w], ref_layout="channels_first"))
    kv = g.add("attn.kv", "sdsa_kv", qkv[1:])
    kv = g.lif("attn.kv_lif", kv, vth=0.5, ref_shape=[c2])
    y = g.add("attn.mask", "mask", [qkv[0], kv])
    y = g.linear_bn("attn.proj", y, rng.normal(0, 2.0 / np.sqrt(c2), (c2, c2)), rng.normal(0, 0.1, c2), None)
    x = g.add("attn.residual", "add", [y, tokens])
    f = g.add("features", "mean", [x])
    g.linear_bn("head", f, rng.normal(0, 1.0, (num_classes, c2)), np.zeros(num_classes), None, in_kind="real")
    return g.graph({"family": "toy", "T": T, "output": "head",
                    "classes": [f"class_{i}" for i in range(num_classes)], "readout": "mean_logits",
                    "stream": {"count": 2000, "window_us": None}})
