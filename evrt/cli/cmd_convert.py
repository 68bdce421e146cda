"""evrt convert CKPT --arch A -o MODEL.evrt: import a trained checkpoint without torch and fold it."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import EvrtError


def register(sub):
    from ..archs import ARCHS
    p = sub.add_parser("convert", help="fold a PyTorch checkpoint (.pth/.pth.tar/.safetensors/.npz) or a NIR "
                                       "graph (.nir) into an .evrt model")
    p.add_argument("checkpoint")
    p.add_argument("--arch", choices=sorted(ARCHS), help="the checkpoint's architecture (not for .nir)")
    p.add_argument("-o", "--output", required=True, help="output .evrt file")
    p.add_argument("--timesteps", "-T", type=int, help="T (required when the checkpoint saves no args)")
    p.add_argument("--classes", help="class names in output order: a text file (one per line) or a JSON list")
    p.add_argument("--sensor", default="128x128", help="input width x height (default 128x128)")
    p.add_argument("--heads", type=int, help="attention heads, when the checkpoint's args do not say")
    p.add_argument("--input-size", type=int, help="SpikingResformer: model input size after the resize (default 64)")
    p.add_argument("--neuron", choices=["dif", "if"], help="CSDformer: delayed IF (exact, default) or plain IF")
    p.add_argument("--precision", choices=["float64", "float32", "int8"], default="float64",
                   help="parameters in the file: float64 as folded (default); float32 rounds once here (what "
                        "the float32 runtime does anyway), halves the file and loads without a copy; int8 "
                        "quantises conv2d/linear weights with per-output-channel scales (docs/SEMANTICS.md, "
                        "\"Int8 weights\"), the rest as folded. An existing .evrt can be given as input")
    p.add_argument("--force", action="store_true", help="replace an existing output file (never the checkpoint)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    from .nir_args import add_nir_args
    add_nir_args(p)
    p.set_defaults(func=run)


def read_class_file(path: str) -> list[str]:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise EvrtError(f"--classes {path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            raise EvrtError(f"--classes {path}: not a valid JSON list ({str(e)[:80]})") from None
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise EvrtError(f"--classes {path}: class names must be a list of strings")
    if not names:
        raise EvrtError(f"--classes {path}: no class names in the file")
    if len(set(names)) != len(names):
        raise EvrtError(f"--classes {path}: class names repeat")
    return names


def parse_sensor(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise EvrtError(f"--sensor must look like 128x128, got {text!r}") from None
    if not (1 <= w <= 65536 and 1 <= h <= 65536):
        raise EvrtError(f"--sensor {text}: width and height must be 1..65536 pixels")
    return w, h


def check_output(out: str, inputs=(), force: bool = False) -> None:
    """Refuse an output path that would destroy data or cannot be written, before any work is done:
    one of the inputs, a directory, a missing directory, or an existing file without ``force``."""
    import os
    p = Path(out)
    for src in inputs:
        try:
            if p.exists() and os.path.samefile(p, src):
                raise EvrtError(f"-o {out} is the input file {src}; refusing to overwrite it (choose another -o)")
        except OSError:
            pass
    if p.is_dir():
        raise EvrtError(f"-o {out} is a directory; give a file name (e.g. {p / 'model.evrt'})")
    if not p.parent.is_dir():
        raise EvrtError(f"-o {out}: directory {p.parent} does not exist")
    if p.exists() and not force:
        raise EvrtError(f"-o {out} already exists; pass --force to replace it")


def run(args) -> int:
    from ..archs import convert

    if args.checkpoint.lower().endswith(".evrt"):
        return requantise(args)
    if args.checkpoint.lower().endswith(".nir"):
        from .nir_args import convert_nir
        if args.arch:
            raise EvrtError("--arch does not apply to a .nir graph (it carries its own architecture)")
        if args.precision == "int8":
            raise EvrtError("--precision int8: convert the .nir to .evrt first, then "
                            "`evrt convert MODEL.evrt --precision int8 -o OUT.evrt`")
        check_output(args.output, [args.checkpoint], args.force)
        return convert_nir(args, read_class_file(args.classes) if args.classes else None)
    if not args.arch:
        raise EvrtError("--arch is required for a checkpoint (only a .nir graph brings its own architecture)")
    from ..checkpoint import load_checkpoint

    check_output(args.output, [args.checkpoint], args.force)
    sensor = parse_sensor(args.sensor)
    classes = read_class_file(args.classes) if args.classes else None
    if args.timesteps is not None and args.timesteps < 1:
        raise EvrtError(f"--timesteps must be at least 1, got {args.timesteps}")
    ckpt = load_checkpoint(args.checkpoint)
    graph = convert(ckpt, args.arch, timesteps=args.timesteps, classes=classes,
                    sensor=sensor, num_heads=args.heads, input_size=args.input_size,
                    neuron=args.neuron)
    graph = save_as(graph, args)
    meta = graph.meta
    summary = {"output": args.output, "arch": args.arch, "T": meta["T"], "params": graph.num_params,
               "precision": args.precision, "bytes": Path(args.output).stat().st_size,
               "ops": len(graph.ops), "classes": meta["classes"], "unused_keys": meta["unused_keys"],
               "convert_seconds": meta["convert_seconds"]}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {args.output}: {args.arch}, T={meta['T']}, {graph.num_params:,} parameters, "
              f"{len(graph.ops)} ops, {args.precision} ({summary['bytes']:,} bytes, {meta['convert_seconds']:.2f} s)")
        if meta["unused_keys"]:
            print(f"unused checkpoint tensors (not needed at inference): {', '.join(meta['unused_keys'])}")
    return 0


def save_as(graph, args):
    """Write the graph at --precision to -o (int8: conv2d/linear weights quantised first; the other
    parameters as they are, since the int8 mode applies scale and bias in float64, so a converted int8
    file equals int8 at run time). Returns the graph written."""
    if args.precision == "int8":
        from ..quant import quantise_graph
        graph = quantise_graph(graph)
    try:
        graph.save(args.output, precision=None if args.precision == "int8" else args.precision)
    except OSError as e:
        raise EvrtError(f"-o {args.output}: cannot write ({e.strerror or e})") from None
    return graph


def requantise(args) -> int:
    """An existing .evrt model to float32 or int8 (conv2d/linear weights quantised) parameters."""
    from ..graph import Graph
    from ..quant import weight_bytes

    if args.precision == "float64":
        raise EvrtError(f"{args.checkpoint} is already an evrt model; give --precision float32 or int8 to "
                        "rewrite it")
    if args.arch:
        raise EvrtError("--arch does not apply to an .evrt model")
    check_output(args.output, [args.checkpoint], args.force)
    graph = Graph.load(args.checkpoint)
    graph = save_as(graph, args)
    summary = {"output": args.output, "precision": args.precision, "ops": len(graph.ops),
               "weight_bytes": weight_bytes(graph, args.precision), "params": graph.num_params,
               "bytes": Path(args.output).stat().st_size}
    if args.json:
        print(json.dumps(summary))
    else:
        what = "int8 conv2d/linear weights" if args.precision == "int8" else "float32 parameters"
        print(f"wrote {args.output}: {what}, {summary['weight_bytes']:,} weight bytes, "
              f"{summary['bytes']:,} bytes in all")
    return 0
