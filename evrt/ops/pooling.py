"""Pooling: max-pooling of a map and the mean over tokens. No arithmetic is counted."""
from __future__ import annotations

import numpy as np

from .. import kernels as K
from .base import Attr, Kind, OpImpl, need, non_negative, op_type, out_size, positive

WINDOW = {"k": Attr(int, 3, check=positive), "stride": Attr(int, 2, check=positive),
          "pad": Attr(int, 1, check=non_negative)}


def window_shape(a, ins):
    need(len(ins[0]) == 3, "expects an (H, W, C) map")
    need(a["pad"] < a["k"], "pad must be smaller than the window")
    h, w, c = ins[0]
    return (out_size(h, a["k"], a["stride"], a["pad"]), out_size(w, a["k"], a["stride"], a["pad"]), c)


@op_type("maxpool")
class MaxPool(OpImpl):
    """k, stride, pad on an (H, W, C) map; floor mode, -inf padding (works for spikes and real values)."""
    kind = Kind.POOLING
    attrs = WINDOW

    @classmethod
    def shape(cls, a, p, ins):
        return window_shape(a, ins)

    def run(self, inputs, ctx):
        K.maxpool2d(inputs[0], self.a["k"], self.a["stride"], self.a["pad"], self.out)
        return self.out


@op_type("mean")
class Mean(OpImpl):
    """Mean over every axis but channels: (H, W, C) or (N, C) -> (C,)."""
    kind = Kind.POOLING

    @classmethod
    def shape(cls, a, p, ins):
        return (ins[0][-1],)

    def run(self, inputs, ctx):
        x = inputs[0]
        np.mean(x.reshape(-1, x.shape[-1]), axis=0, out=self.out)
        return self.out
