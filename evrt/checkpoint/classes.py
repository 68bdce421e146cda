"""Class names in output order, from what a checkpoint says about itself.

The rule: a checkpoint's own metadata wins (its args or top-level entries: ``classes`` /
``class_names``, or ``label_order``: 'gesture' | 'spikingjelly' for the 11 DVS128 Gesture outputs,
'digit' for N-MNIST's "0".."9");
names given by the user must agree with it (the same names in the same order), else it is an error —
a silently permuted class list scores a good model as a bad one. With no metadata, the user's names,
else the default (DVS128 Gesture in spikingjelly's folder order for 11 outputs, ``class_i`` otherwise).
"""
from __future__ import annotations

from ..errors import CheckpointError

__all__ = ["classes_from_metadata", "resolve_classes"]

_NAME_KEYS = ("classes", "class_names")


def _gesture(order):
    def names():
        from ..datasets.dvsgesture import class_names
        return list(class_names(order))
    return names


# label_order values training scripts save, and the output names each one means; an order not listed
# here says nothing evrt can use, and the rule falls through to the next source of names
_ORDERS = {"gesture": _gesture("gesture"), "spikingjelly": _gesture("spikingjelly"),
           "digit": lambda: [str(d) for d in range(10)]}


def classes_from_metadata(ckpt, num_classes: int) -> tuple:
    """``(names, where)`` the checkpoint states for its outputs, or ``(None, None)``."""
    for where, src in (("args", ckpt.args or {}), ("top level", ckpt.extra or {})):
        for key in _NAME_KEYS:
            names = src.get(key)
            if names is None:
                continue
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
                raise CheckpointError(f"{ckpt.path}: {where} {key!r} is not a list of class names")
            if len(names) != num_classes:
                raise CheckpointError(f"{ckpt.path}: {where} {key!r} names {len(names)} classes, the model has "
                                      f"{num_classes} outputs")
            return list(names), f"the checkpoint's {where} {key!r}"
        order = src.get("label_order")
        names = _ORDERS.get(order)() if isinstance(order, str) and order in _ORDERS else None
        if names is not None:
            if len(names) != num_classes:
                raise CheckpointError(f"{ckpt.path}: {where} label_order={order!r} names {len(names)} classes, the "
                                      f"model has {num_classes} outputs")
            return names, f"the checkpoint's {where} label_order={order!r}"
    return None, None


def resolve_classes(ckpt, num_classes: int, given=None) -> tuple:
    """``(names, note)`` by the rule above; ``CheckpointError`` when ``given`` contradicts the checkpoint."""
    own, where = classes_from_metadata(ckpt, num_classes)
    if given is not None:
        given = list(given)
        if len(given) != num_classes:
            raise CheckpointError(f"{len(given)} class names given, the model has {num_classes} outputs")
        if own is not None and given != own:
            diff = next(i for i, (a, b) in enumerate(zip(given, own)) if a != b)
            raise CheckpointError(f"--classes contradicts {where}: output {diff} is {own[diff]!r} there, "
                                  f"{given[diff]!r} in --classes (leave --classes out to use the checkpoint's)")
        if own is None:
            return given, "given by the user"
    if own is not None:
        return own, where
    names, note = default_class_names(num_classes)
    return list(names), note


def default_class_names(num_classes: int) -> tuple[list[str], str]:
    """11 outputs: DVS128 Gesture in spikingjelly's output order (folders sorted as strings; docs/SEMANTICS.md),
    which every public training script uses."""
    if num_classes == 11:
        from ..datasets.dvsgesture import class_names
        return class_names("spikingjelly"), "DVS128 Gesture, spikingjelly output order (docs/SEMANTICS.md, Events and samples)"
    return [f"class_{i}" for i in range(num_classes)], "unnamed"
