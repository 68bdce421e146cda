"""evrt against the UPSTREAM model code: the DVS128 Gesture models of ZK-Zhou/spikformer,
BICLab/Spike-Driven-Transformer and xyshi2000/SpikingResformer, imported from checkouts the user
supplies (never vendored), timed side by side with evrt on the same checkpoints and event samples.

    python tools/bench.py --upstream DIR        (DIR/spikformer, DIR/Spike-Driven-Transformer, DIR/SpikingResformer)

Per model: the upstream class is built with its published gesture configuration, given realistic
random weights (tools/reference/checkpoints.py's recipe, calibrated on event samples), saved in the
repository's own checkpoint container and converted with `python -m evrt convert` (the user's path);
evrt's logits are checked once against the upstream model's on a sample. Then each side runs in its
own long-lived process (peak RSS apart) and the driver alternates them rep by rep (A B, B A, ...), so
a slow minute of a shared machine lands on both. Each rep times, per sample, input framing and model
compute separately, and a stream of per-step latencies.

The upstream code imports timm (non-compute helpers only: register_model, trunc_normal_, to_2tuple,
DropPath at rate 0, _cfg) and einops (an unused import); where they cannot be imported (timm needs a
torchvision that matches torch) tiny stand-ins are installed and the report says so. The upstream
neurons ask for spikingjelly's 'cupy' backend, which runs only on a GPU: on the CPU they run with
spikingjelly's 'torch' backend, as every CPU user of these repositories has to.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SENSOR = (128, 128)
RECIPE = 1   # bump when the checkpoint recipe changes (invalidates out/bench/upstream/)

# The upstream checkouts: folder name under --upstream DIR (the GitHub repository name), the files that
# define the model (their hash keys the cached checkpoint), evrt's arch name and the published gesture
# configuration.
UPSTREAM = {
    "spikformer-dvs": dict(repo="ZK-Zhou/spikformer", dir="spikformer", files=("cifar10dvs/model.py",),
                           arch="spikformer", ext=".pth", title="Spikformer-DVS 2-256, T=16, 128x128 "
                           "(cifar10dvs/model.py with 11 classes)", convert=[]),
    "sdt-gesture": dict(repo="BICLab/Spike-Driven-Transformer", dir="Spike-Driven-Transformer",
                        files=("model/spikeformer.py", "module/ms_conv.py", "module/sps.py"), arch="sdt",
                        ext=".pth.tar", title="SDT gesture 2-256, T=16, 128x128 (conf/gesture/2_256_200E_t16.yml)",
                        convert=[]),
    "resformer-dvsg": dict(repo="xyshi2000/SpikingResformer", dir="SpikingResformer",
                           files=("models/spikingresformer.py", "models/submodules/layers.py"),
                           arch="spikingresformer", ext=".pth",
                           title="SpikingResformer-dvsg, T=16, 3x64x64 (configs/direct_training/dvs128gesture.yaml)",
                           convert=["--timesteps", "16", "--input-size", "64"]),
}
T = 16


class UpstreamError(Exception):
    """A one-line problem with the upstream checkouts."""


def locate(root, names=None) -> dict:
    """{model: checkout path} under `root`; a one-line UpstreamError naming what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise UpstreamError(f"--upstream {root}: not a directory (it should hold the checkouts "
                            + ", ".join(UPSTREAM[n]["dir"] for n in UPSTREAM) + ")")
    out, missing = {}, []
    for name in names or UPSTREAM:
        u = UPSTREAM[name]
        path = root / u["dir"]
        absent = [f for f in u["files"] if not (path / f).is_file()]
        if absent:
            missing.append(f"{path / absent[0]} (git clone https://github.com/{u['repo']} {path})")
        else:
            out[name] = path
    if missing:
        raise UpstreamError(f"--upstream {root}: missing " + "; ".join(missing))
    return out


def source_hash(name, path) -> str:
    """Key of a prepared checkpoint + graph: the upstream model files, the recipe and evrt's converter
    (a changed converter or graph format converts again)."""
    h = hashlib.sha256(f"{RECIPE}|{name}".encode())
    conv = sorted((ROOT / "evrt" / "archs").rglob("*.py")) + sorted((ROOT / "evrt" / "checkpoint").rglob("*.py")) \
        + [ROOT / "evrt" / "fold.py", ROOT / "evrt" / "graph.py"]
    for f in [Path(path) / f for f in UPSTREAM[name]["files"]] + conv:
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------- events

def gesture_events(n, seed, seconds):
    """A deterministic DVS128-sized stream: `n` events over `seconds` (tools/parity.py's moving blob
    plus 20 % uniform noise)."""
    from tools.parity import random_gesture_events
    return random_gesture_events(int(n), int(seed), SENSOR, duration_us=int(seconds * 1e6))


def make_inputs(p):
    """The samples and the stream of one run, from the explicit parameters in `p`."""
    samples = [gesture_events(p["sample_events"], 100 + i, p["sample_s"]) for i in range(p["n_samples"])]
    stream = gesture_events(p["stream_rate"] * p["stream_s"], 50, p["stream_s"])
    return samples, stream


def windows(stream, window_us):
    from evrt.framing import StreamFramer
    f = StreamFramer(window_us=int(window_us))
    return [w for w in f.push(stream) + f.flush()]


# ------------------------------------------------------------------------------------ upstream side

def install_shims() -> list:
    """Import timm / einops if they work; otherwise put minimal stand-ins for the names the upstream
    model files import into sys.modules. Returns what was replaced (for the report)."""
    shims = []
    try:
        import timm.models.layers  # noqa: F401
        import timm.models.registry  # noqa: F401
        import timm.models.vision_transformer  # noqa: F401
    except Exception as e:   # noqa: BLE001 - ImportError, or torchvision failing to load beside this torch
        for k in [k for k in sys.modules if k.split(".")[0] in ("timm", "torchvision")]:
            del sys.modules[k]
        _timm_shim()
        shims.append(f"timm ({type(e).__name__}: {str(e).splitlines()[0][:80]})")
    try:
        import einops.layers.torch  # noqa: F401
    except Exception as e:   # noqa: BLE001
        for k in [k for k in sys.modules if k.split(".")[0] == "einops"]:
            del sys.modules[k]
        _einops_shim()
        shims.append(f"einops ({type(e).__name__})")
    return shims


def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def _timm_shim():
    import collections.abc
    import itertools

    import torch
    from torch import nn

    def to_2tuple(x):
        return tuple(x) if isinstance(x, collections.abc.Iterable) and not isinstance(x, str) else \
            tuple(itertools.repeat(x, 2))

    class DropPath(nn.Module):      # the models build it only for drop_path > 0 (never here)
        def __init__(self, drop_prob=0.0):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):
            if self.drop_prob and self.training:
                raise RuntimeError("the timm stand-in's DropPath does not train")
            return x

    layers = _module("timm.models.layers", to_2tuple=to_2tuple, trunc_normal_=torch.nn.init.trunc_normal_,
                     DropPath=DropPath)
    registry = _module("timm.models.registry", register_model=lambda fn: fn)
    vit = _module("timm.models.vision_transformer", _cfg=lambda url="", **kw: dict(url=url, **kw))
    models = _module("timm.models", layers=layers, registry=registry, vision_transformer=vit)
    _module("timm", models=models, __version__="stand-in")


def _einops_shim():
    from torch import nn

    class Rearrange(nn.Module):
        def __init__(self, *a, **k):
            raise RuntimeError("einops stand-in: Rearrange is imported by the model file but not used")
    lt = _module("einops.layers.torch", Rearrange=Rearrange)
    _module("einops.layers", torch=lt)
    _module("einops")


_SHIMS = []


def _sj_integrate():
    """spikingjelly.datasets.integrate_events_by_fixed_frames_number. That module imports torchvision
    for its dataset classes only; where torchvision cannot be imported, a stand-in with the three names
    it imports (DatasetFolder, datasets.utils, transforms) is put in place first."""
    try:
        from spikingjelly.datasets import integrate_events_by_fixed_frames_number
        return integrate_events_by_fixed_frames_number
    except Exception as e:   # noqa: BLE001 - torchvision failing to load beside this torch
        for k in [k for k in sys.modules if k.split(".")[0] == "torchvision" or k.startswith("spikingjelly.datasets")]:
            del sys.modules[k]
        import torch.utils.data

        class DatasetFolder(torch.utils.data.Dataset):
            def __init__(self, *a, **k):
                raise RuntimeError("torchvision stand-in: spikingjelly's dataset classes are not available")
        utils = _module("torchvision.datasets.utils")
        ds = _module("torchvision.datasets", DatasetFolder=DatasetFolder, utils=utils)
        tr = _module("torchvision.transforms")
        _module("torchvision", datasets=ds, transforms=tr, __version__="stand-in")
        _SHIMS.append(f"torchvision (imported by spikingjelly.datasets; {type(e).__name__})")
        from spikingjelly.datasets import integrate_events_by_fixed_frames_number
        return integrate_events_by_fixed_frames_number


def _build_cupy_free(ctor):
    """Build a model whose neurons ask for backend='cupy', then put them on spikingjelly's 'torch'
    backend (the only CPU backend)."""
    from spikingjelly.activation_based import base as ab_base
    from spikingjelly.clock_driven import neuron as cd_neuron
    saved = cd_neuron.check_backend, ab_base.check_backend_library
    cd_neuron.check_backend = ab_base.check_backend_library = lambda backend: None
    try:
        model = ctor()
    finally:
        cd_neuron.check_backend, ab_base.check_backend_library = saved
    n = 0
    for m in model.modules():
        if getattr(m, "backend", None) == "cupy":
            m.backend = "torch"
            n += 1
    return model, n


def build_upstream(name, path):
    """The upstream model class with the published gesture configuration (eval, float32, torch backend).
    Returns (model, forward(frames [1, T, C, H, W]) -> logits [1, classes], n_neurons_switched)."""
    import importlib.util
    from functools import partial

    import torch
    from torch import nn
    path = Path(path)
    if name == "spikformer-dvs":
        spec = importlib.util.spec_from_file_location("upstream_spikformer_cifar10dvs_model",
                                                      path / "cifar10dvs" / "model.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        # the registered `spikformer` with num_classes=11 (it hard-codes 10 for CIFAR10-DVS)
        ctor = partial(mod.Spikformer, patch_size=16, embed_dims=256, num_heads=16, mlp_ratios=4, in_channels=2,
                       num_classes=11, qkv_bias=False, norm_layer=partial(nn.LayerNorm, eps=1e-6), depths=2,
                       sr_ratios=1)
        fwd = None
    elif name == "sdt-gesture":
        sys.path.insert(0, str(path))
        import model as sdt_model   # the repository's model/ package (imports its module/ package)
        # train.py's create_model call with conf/gesture/2_256_200E_t16.yml (timm drops the None kwargs)
        ctor = partial(sdt_model.sdt, T=16, drop_rate=0.0, drop_path_rate=0.0, num_heads=8, num_classes=11,
                       pooling_stat="0111", img_size_h=128, img_size_w=128, embed_dims=256, mlp_ratios=4,
                       in_channels=2, qkv_bias=False, depths=2, sr_ratios=1, spike_mode="lif", dvs_mode=False,
                       TET=False)

        def fwd(model, x):
            return model(x)[0]          # (logits averaged over T, hook)
    elif name == "resformer-dvsg":
        sys.path.insert(0, str(path))
        import models.spikingresformer as srf
        ctor = partial(srf.spikingresformer_dvsg, T=16, num_classes=11, img_size=64)   # main.py's create_model

        def fwd(model, x):
            return model(x).mean(0)     # [T, B, classes] -> main.py's output.mean(0)
    else:
        raise KeyError(name)
    torch.manual_seed(0)
    model, n = _build_cupy_free(ctor)
    model = model.float().eval()
    return model, (fwd or (lambda m, x: m(x))), n


def upstream_frames(ev, name, frames_num=T):
    """The upstream input of one sample: spikingjelly's DVS128Gesture framing (frames_number=T,
    split_by='number'); SpikingResformer then applies its DVStransform (torchvision
    Resize(64, antialias=True) per frame, which is F.interpolate bilinear antialias, and the sum
    channel). Returns [1, T, C, H, W] float32."""
    import numpy as np
    import torch
    integrate_events_by_fixed_frames_number = _sj_integrate()
    W, H = SENSOR
    if len(ev):
        f = integrate_events_by_fixed_frames_number(dict(t=ev["t"], x=ev["x"], y=ev["y"], p=ev["on"]),
                                                    "number", frames_num, H, W)
    else:
        f = np.zeros((frames_num, 2, H, W))
    x = torch.from_numpy(f).float()
    if name == "resformer-dvsg":
        x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
        x = torch.cat([x, x.sum(dim=1, keepdim=True)], dim=1)
    return x.unsqueeze(0)


def reset_net(model):
    from tools.reference.neurons import reset_states
    reset_states(model)


# -------------------------------------------------------------------------------- checkpoint + graph

def prepare(name, path, cache, p, rebuild=False):
    """Random realistic checkpoint of the upstream class in its repository's container, the evrt graph
    converted from it by the CLI, and a one-sample check that both give the same logits. Cached under
    `cache` by the upstream source hash and the recipe."""
    cache = Path(cache) / name
    key = source_hash(name, path)
    info_path = cache / "prepared.json"
    if info_path.is_file() and not rebuild:
        info = json.loads(info_path.read_text())
        # the files sit beside prepared.json (a copied out/bench/upstream/ folder stays valid)
        info.update(ckpt=str(cache / Path(info["ckpt"]).name), graph=str(cache / Path(info["graph"]).name))
        if info.get("key") == key and Path(info["graph"]).is_file() and Path(info["ckpt"]).is_file():
            return info
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--prepare", json.dumps(dict(name=name, path=str(path),
                                                                                    cache=str(cache), p=p))]
    r = subprocess.run(cmd, cwd=ROOT, env=_env(None), capture_output=True, text=True)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("@@RESULT@@")]
    if r.returncode or not line:
        raise UpstreamError(f"{name}: preparing the upstream checkpoint failed: "
                            + (r.stderr.strip().splitlines() or ["no output"])[-1])
    info = json.loads(line[-1][len("@@RESULT@@"):])
    info["key"] = key
    info["prepare_s"] = time.perf_counter() - t0
    info_path.write_text(json.dumps(info, indent=1))
    return info


def _prepare_here(job):
    import numpy as np
    import torch
    from tools.reference.checkpoints import (randomize_for_firing, save_sdt_checkpoint,
                                             save_spikformer_checkpoint, save_spikingresformer_checkpoint)
    name, path, cache, p = job["name"], job["path"], Path(job["cache"]), job["p"]
    u = UPSTREAM[name]
    shims = install_shims()
    model, fwd, switched = build_upstream(name, path)
    # calibration: two streams like the benchmark's (other seeds), framed the upstream way, [B, T, ...]
    calib = torch.cat([upstream_frames(gesture_events(p["sample_events"], s, p["sample_s"]), name) for s in (1, 2)])
    randomize_for_firing(model, seed=3, calib=calib, neg_gamma_frac=0.1 if name == "resformer-dvsg" else 0.0)
    ckpt = cache / f"checkpoint{u['ext']}"
    import argparse
    if name == "spikformer-dvs":
        save_spikformer_checkpoint(model, ckpt, argparse.Namespace(T=16, num_heads=16))
    elif name == "sdt-gesture":
        save_sdt_checkpoint(model, ckpt, argparse.Namespace(time_steps=16, num_heads=8, pooling_stat="0111"))
    else:
        save_spikingresformer_checkpoint(model, ckpt)
    graph = cache / "model.evrt"
    cmd = [sys.executable, "-m", "evrt", "convert", str(ckpt), "--arch", u["arch"], "-o", str(graph),
           "--sensor", f"{SENSOR[0]}x{SENSOR[1]}", "--force"] + u["convert"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"evrt convert failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    # the same model on both sides, on one benchmark sample: float64 logits equal (the model), float32
    # the same class (a float32 spike cascade may move the logits a little)
    from evrt.engine import Session
    ev = gesture_events(p["sample_events"], 100, p["sample_s"])
    check = {}
    for prec, dt in (("float64", torch.float64), ("float32", torch.float32)):
        model = model.to(dt)
        reset_net(model)
        with torch.no_grad():
            ref = fwd(model, upstream_frames(ev, name).to(dt))[0].double().numpy()
        got = Session(str(graph), prec).run_clip(ev).logits
        check[prec] = dict(argmax_upstream=int(ref.argmax()), argmax_evrt=int(np.argmax(got)),
                           max_abs_diff=float(np.abs(got - ref).max()), logit_scale=float(np.abs(ref).max()))
    check["same"] = bool(check["float64"]["max_abs_diff"] <= 1e-9 * max(1.0, check["float64"]["logit_scale"])
                         and check["float32"]["argmax_upstream"] == check["float32"]["argmax_evrt"])
    print("@@RESULT@@" + json.dumps(dict(ckpt=str(ckpt), graph=str(graph), shims=shims + _SHIMS, cupy_neurons=switched,
                                         check=check)))


# ----------------------------------------------------------------------------------------- workers

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "EVRT_THREADS")


def _env(threads):
    """The worker's environment: thread variables pinned to `threads`, or removed (library defaults)."""
    env = dict(os.environ)
    for v in THREAD_VARS:
        if threads:
            env[v] = str(threads)
        else:
            env.pop(v, None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def session_takes_threads() -> bool:
    from evrt.engine import Session
    return "threads" in inspect.signature(Session.__init__).parameters


class EvrtSide:
    """evrt float32: framing = event_bins / clip_frames + the graph's input op; compute = every other op."""

    def __init__(self, job):
        from evrt.graph import Graph
        self.job = job
        self.samples, stream = make_inputs(job["p"])
        self.wins = windows(stream, job["p"]["window_us"])
        self.graph = Graph.load(job["graph"])
        self.threads_api = session_takes_threads()
        self.input_s = 0.0
        cands = [1] if not self.threads_api else (list(range(1, os.cpu_count() + 1)) if job["threads"] == 0
                                                  else [job["threads"]])
        self.probe = {}
        best = None
        for k in cands:       # "evrt at its best": the fastest thread count on two warm clips
            sess = self._session(k, "clip")
            self.clip(sess, self.samples[0])
            t = min(self._timed_clip(sess) for _ in range(2 if len(cands) > 1 else 1))
            self.probe[k] = t
            if best is None or t < self.probe[best]:
                best = k
        self.threads = best
        self.sess = self._session(best, "clip")
        self.stream_sess = self._session(best, "continuous")
        self.clip(self.sess, self.samples[0])
        self.T = self.sess.T
        # ACs per sample (counted over the samples once)
        self.sess.reset_counters()
        for s in self.samples:
            self.clip(self.sess, s)
        tot = self.sess.report().totals()
        n = len(self.samples)
        self.counts = dict(acs=tot["acs"] / n, macs=tot["macs"] / n, dense_macs=tot["dense_macs"] / n,
                           firing_rate=tot["firing_rate"])

    def _session(self, k, mode):
        from evrt.engine import Session
        kw = dict(threads=k) if self.threads_api else {}
        s = Session(self.graph, "float32", mode=mode, **kw)
        for impl in s.impls:          # time the input op (event binning) apart from the model
            if impl.kind.value == "input":
                impl.run = self._timer(impl.run)
        return s

    def _timer(self, fn):
        def run(*a):
            t0 = time.perf_counter()
            try:
                return fn(*a)
            finally:
                self.input_s += time.perf_counter() - t0
        return run

    def _timed_clip(self, sess):
        t0 = time.perf_counter()
        self.clip(sess, self.samples[0])
        return time.perf_counter() - t0

    def clip(self, sess, ev):
        """One sample; returns (framing s, compute s)."""
        from evrt.framing import FrameSpec, clip_frames, event_bins
        import numpy as np
        self.input_s = 0.0
        t0 = time.perf_counter()
        spec = sess.meta["frame"]
        if spec.get("resize") == "antialias":
            steps = list(clip_frames(ev, FrameSpec.from_dict(spec), dtype=np.float32))
        else:
            steps = list(event_bins(ev, sess.T))
        t1 = time.perf_counter()
        sess.run_clip(frames=steps)
        t2 = time.perf_counter()
        return (t1 - t0) + self.input_s, (t2 - t1) - self.input_s

    def step(self, w):
        self.stream_sess.step(w)

    def stream_reset(self):
        self.stream_sess.reset()

    def info(self):
        return dict(threads=self.threads, threads_api=self.threads_api, probe_s=self.probe, counts=self.counts,
                    T=self.T)


class TorchSide:
    """The upstream PyTorch model: framing = spikingjelly's frames (+ SpikingResformer's resize and sum
    channel) as a tensor; compute = reset + forward under no_grad."""

    def __init__(self, job):
        import torch
        if job["threads"]:
            torch.set_num_threads(int(job["threads"]))
        self.shims = install_shims()
        from tools.reference.checkpoints import load_state_dict
        self.name = job["model"]
        self.samples, stream = make_inputs(job["p"])
        self.wins = windows(stream, job["p"]["window_us"])
        self.model, self.fwd, _ = build_upstream(self.name, job["path"])
        sd, _ = load_state_dict(job["ckpt"])
        self.model.load_state_dict(sd)
        self.model = self.model.float().eval()
        self.torch = torch
        self.clip(None, self.samples[0])
        self.threads = torch.get_num_threads()

    def clip(self, _sess, ev):
        t0 = time.perf_counter()
        x = upstream_frames(ev, self.name)
        t1 = time.perf_counter()
        with self.torch.no_grad():
            reset_net(self.model)
            self.fwd(self.model, x)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1

    def step(self, w):
        with self.torch.no_grad():
            self.fwd(self.model, upstream_frames(w, self.name, frames_num=1))

    def stream_reset(self):
        reset_net(self.model)

    def info(self):
        return dict(threads=self.threads, shims=self.shims + _SHIMS)


def serve(job):
    """A worker: set up one side, then answer 'rep' lines with one rep's timings (JSON) until 'end'."""
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    side = EvrtSide(job) if job["side"] == "evrt" else TorchSide(job)
    setup_s = time.perf_counter() - t0
    sess = getattr(side, "sess", None)
    print("@@READY@@" + json.dumps(dict(setup_s=setup_s)), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "rep":
            framing, compute = [], []
            for ev in side.samples:
                f, c = side.clip(sess, ev)
                framing.append(f)
                compute.append(c)
            side.stream_reset()
            lat = []
            for w in side.wins:
                t = time.perf_counter()
                side.step(w)
                lat.append(time.perf_counter() - t)
            print("@@REP@@" + json.dumps(dict(framing_s=framing, compute_s=compute, step_s=lat)), flush=True)
        elif cmd == "end":
            info = side.info()
            info.update(peak_rss_mb=_rss_mb(), rss_start_mb=rss0, setup_s=setup_s,
                        sample_events=[int(len(s)) for s in side.samples], stream_steps=len(side.wins))
            print("@@END@@" + json.dumps(info), flush=True)
            return


class Worker:
    """Driver end of one side's process."""

    def __init__(self, job, env_threads):
        self.job = job
        self.p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", json.dumps(job)],
                                  cwd=ROOT, env=_env(env_threads), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.ready = self._read("@@READY@@")

    def _read(self, tag):
        for line in self.p.stdout:
            if line.startswith(tag):
                return json.loads(line[len(tag):])
        err = self.p.stderr.read().strip().splitlines()
        self.p.wait()
        raise UpstreamError(f"{self.job['side']} worker for {self.job['model']} stopped: "
                            + (err[-1] if err else f"exit {self.p.returncode}"))

    def rep(self):
        self.p.stdin.write("rep\n")
        self.p.stdin.flush()
        return self._read("@@REP@@")

    def end(self):
        self.p.stdin.write("end\n")
        self.p.stdin.flush()
        out = self._read("@@END@@")
        self.p.stdin.close()
        self.p.wait(timeout=60)
        return out

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


# --------------------------------------------------------------------------------------- statistics

def rep_order(reps, sides=("evrt", "torch")):
    """The interleaved schedule: rep 0 runs A then B, rep 1 B then A, ... (a drift in the machine's
    load lands on both sides alike)."""
    out = []
    for r in range(reps):
        out += [(r, s) for s in (sides if r % 2 == 0 else tuple(reversed(sides)))]
    return out


def _q(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def spread(xs) -> dict:
    """median, min, max, quartiles (linear interpolation) of repeated measurements."""
    return dict(median=_q(xs, 0.5), min=min(xs), max=max(xs), q1=_q(xs, 0.25), q3=_q(xs, 0.75), n=len(xs))


def within_spread(now: dict, before: dict) -> bool:
    """A rerun agrees with an earlier one when either median lies inside the other's min-max range."""
    return before["min"] <= now["median"] <= before["max"] or now["min"] <= before["median"] <= now["max"]


def summarize(reps: list) -> dict:
    """Per-rep timings of one side -> spreads (over reps) of per-sample framing, compute and total
    (each rep's mean over its samples) and the step latencies' p50 / p99 (pooled, and per rep)."""
    fr = [sum(r["framing_s"]) / len(r["framing_s"]) for r in reps]
    co = [sum(r["compute_s"]) / len(r["compute_s"]) for r in reps]
    tot = [a + b for a, b in zip(fr, co)]
    pooled = [x for r in reps for x in r["step_s"]]
    return dict(framing_s=spread(fr), compute_s=spread(co), total_s=spread(tot),
                step_p50_s=_q(pooled, 0.5), step_p99_s=_q(pooled, 0.99),
                step_p99_per_rep=spread([_q(r["step_s"], 0.99) for r in reps]),
                step_p50_per_rep=spread([_q(r["step_s"], 0.5) for r in reps]), steps=len(pooled))


# ------------------------------------------------------------------------------------------- driver

SETTINGS = (("whole", 0), ("one", 1))   # (name, threads: 0 = each side's default / best)


def run(upstream_dir, cache, quick=False, names=None, log=print, rebuild=False):
    """Measure every model in both settings. Returns the `upstream` section of results.json."""
    paths = locate(upstream_dir, names)
    p = dict(sample_events=340_000, sample_s=6.0, stream_rate=56_000, window_us=50_000,
             n_samples=1 if quick else 2, stream_s=0.5 if quick else 2.0, reps=2 if quick else 5)
    out = dict(params=p, models={}, settings={}, order="A B, B A, ... (evrt first on even reps)")
    threads_api = session_takes_threads()
    for name, path in paths.items():
        t0 = time.perf_counter()
        info = prepare(name, path, cache, p, rebuild)
        u = UPSTREAM[name]
        out["models"][name] = dict(title=u["title"], repo=u["repo"], path=str(path), commit=_commit(path),
                                   prepare_s=info.get("prepare_s"), cached=time.perf_counter() - t0 < 1.0,
                                   **{k: info[k] for k in ("ckpt", "graph", "shims", "cupy_neurons", "check")})
        c = info["check"]
        log(f"[upstream] {name}: checkpoint + graph ready ({time.perf_counter() - t0:.1f} s); evrt vs upstream "
            f"logits max |diff| float64 {c['float64']['max_abs_diff']:.1e}, float32 {c['float32']['max_abs_diff']:.1e}, "
            f"same class: {c['float32']['argmax_evrt'] == c['float32']['argmax_upstream']}")
        if not c["same"]:
            raise UpstreamError(f"{name}: evrt's graph does not reproduce the upstream model ({c}); not timing it")
    for setting, threads in SETTINGS:
        out["settings"][setting] = {}
        for name in paths:
            m = out["models"][name]
            base = dict(model=name, threads=threads, p=p, graph=m["graph"], ckpt=m["ckpt"], path=m["path"])
            log(f"[upstream] {setting:5s} {name}: starting both sides")
            t0 = time.perf_counter()
            ws = {}
            try:
                # whole machine: PyTorch with the thread variables unset (its default); evrt likewise where
                # Session takes threads=N (it then picks N), else pinned to one thread (its BLAS dense path
                # would otherwise spread over the cores on its own)
                ws["evrt"] = Worker(dict(base, side="evrt"), threads or (None if threads_api else 1))
                ws["torch"] = Worker(dict(base, side="torch"), threads or None)
                reps = {"evrt": [], "torch": []}
                for r, side in rep_order(p["reps"]):
                    reps[side].append(ws[side].rep())
                log(f"[upstream] {setting:5s} {name}: {p['reps']} reps done, load {os.getloadavg()[0]:.2f}")
                res = {}
                for side in ("evrt", "torch"):
                    res[side] = dict(summarize(reps[side]), **ws[side].end(),
                                     raw=reps[side])
                res["wall_s"] = time.perf_counter() - t0
                out["settings"][setting][name] = res
            finally:
                for w in ws.values():
                    w.kill()
    return out


def _commit(path):
    try:
        r = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel", "HEAD"], capture_output=True,
                           text=True, timeout=10)
        top, head = (r.stdout.split() + [None, None])[:2]
        # only the checkout's own repository (not one that happens to contain the folder)
        return head if top and Path(top).resolve() == Path(path).resolve() else None
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve")
    ap.add_argument("--prepare")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if a.serve:
        serve(json.loads(a.serve))
    elif a.prepare:
        _prepare_here(json.loads(a.prepare))
    else:
        ap.error("run through tools/bench.py --upstream DIR")
    return 0


if __name__ == "__main__":
    sys.exit(main())
