"""Session: runs a folded graph one timestep at a time, holding all neuron state.

Readout (docs/SEMANTICS.md, "Readout"):
- clip mode: the prediction is the mean of the step outputs since the last reset; the state is reset
  every T steps (every sample) — identical to the reference, which is trained on T-step clips.
- continuous mode: the prediction is the sliding mean over the last T step outputs; the state is reset
  every `reset_every` steps, or never (`reset_every=None`).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from time import perf_counter

import numpy as np

from .counters import LayerCount, Report
from .errors import EventError, GraphError
from .graph import Graph
from .kernels import every_variant
from .kernels.threads import apply as apply_threads, get_threads, region as thread_region, serial_here, set_threads
from . import stages as staging
from .ops import Kind, build
from .readout import confidence

# int8: int8 synaptic weights summed in integers (evrt/ops/quantised.py), everything else in float32
PRECISIONS = {"float32": np.float32, "float64": np.float64, "int8": np.float32}


@dataclass
class StepOutput:
    logits: np.ndarray        # this step's output (K,)
    readout: np.ndarray       # the prediction's logits after this step (mean over the readout window)
    t: int                    # step index within the current segment (0-based)
    acs: int
    macs: int
    reset_after: bool = False  # the state was reset after this step (end of a T-step segment)

    @property
    def class_index(self) -> int:
        return int(np.argmax(self.readout))


@dataclass
class ClipResult:
    logits: np.ndarray
    step_logits: np.ndarray   # (T, K)
    acs: int
    macs: int

    @property
    def class_index(self) -> int:
        return int(np.argmax(self.logits))

    @property
    def confidence(self) -> float:
        """softmax of the clip's mean logits at the predicted class."""
        return confidence(self.logits, self.class_index)


class _Context:
    """Per-step options the ops see: tracing and teacher forcing."""

    def __init__(self):
        self.trace = False
        self.force = None
        self.t = 0
        self.traces: dict[str, list] = {}
        self.dropped_events = 0

    def record(self, name, spikes, h):
        self.traces.setdefault(name, []).append((spikes.copy(), h.copy()))


@dataclass
class _Totals:
    steps: int = 0
    layers: dict = field(default_factory=dict)


class Session:
    def __init__(self, graph: Graph | str, precision: str = "float32", mode: str = "clip",
                 reset_every: int | None | str = "T", profile: bool = False, threads: int | None = None,
                 spike_lists: bool = True, stages: int | None = None):
        """threads: cores for each step's kernels, process-wide (kernels.threads.set_threads); None keeps
        the current setting (EVRT_THREADS, else every usable core). Results do not depend on it.
        spike_lists: neurons that feed an event conv/linear directly hand it their spike list (see
        _link_spike_lists); off, every such kernel scans the 0/1 map. Results do not depend on it.
        stages: a clip (run_clip) is cut into this many consecutive stages of ops, each on its own thread,
        the steps flowing through them (evrt/stages.py); None: one stage per thread; 1: one step after
        the other, each step's kernels split between the threads. Results do not depend on it."""
        if not isinstance(graph, Graph):
            graph = Graph.load(graph)
        if precision not in PRECISIONS:
            raise GraphError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if mode not in ("clip", "continuous"):
            raise GraphError(f"mode must be 'clip' or 'continuous', got {mode!r}")
        try:                         # also reads a bad EVRT_THREADS here, not at the first step
            set_threads(threads) if threads is not None else get_threads()
        except ValueError as e:
            raise GraphError(str(e)) from None
        self.graph = graph
        self.meta = graph.meta
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.mode = mode
        self.T = int(graph.meta.get("T", 1))
        if reset_every == "T":
            reset_every = self.T
        self.reset_every = reset_every
        self.classes = list(graph.meta.get("classes") or [])
        self.output = graph.meta.get("output", graph.ops[-1].name)
        self.impls = []
        shapes = {"events": None}
        for op in graph.ops:
            impl = build(op, [shapes[s] for s in op.inputs], self.dtype)
            if precision == "int8" and hasattr(impl, "use_int8"):
                impl.use_int8()
            shapes[op.name] = impl.out_shape
            self.impls.append(impl)
        self._by_name = {impl.name: impl for impl in self.impls}
        if spike_lists:
            self._link_spike_lists()
        self.ctx = _Context()
        self.profile = profile        # accumulate wall time per op into self.op_seconds (off: no cost)
        self.op_seconds = {impl.name: 0.0 for impl in self.impls}
        if stages is not None and (isinstance(stages, bool) or not isinstance(stages, (int, np.integer))
                                   or stages < 1):
            raise GraphError(f"stages must be a whole number >= 1 or None (one per thread), got {stages!r}")
        self.stages = stages
        self.stage_plan = None        # planned from the first two clips' op times (evrt/stages.py)
        self._stage_costs = None      # the first of those clips' op times, until the second has run
        self._warming = False
        self._window: deque = deque(maxlen=self.T)
        self._sum = None
        self.t = 0
        self.reset_counters()

    def _link_spike_lists(self) -> None:
        """A neuron op whose output is read directly by a float conv2d/linear lists its fired indices
        while it thresholds, and the consumer builds its event lists from that list instead of
        scanning the dense map (docs/INTERNALS.md "Spike lists"). The dense map is still written.
        Reshapes in between are seen through: they are views, and flat indices do not change."""
        for impl in self.impls:
            if impl.kind is not Kind.SYNAPTIC or not hasattr(impl, "takes_spikes") or not impl.takes_spikes():
                continue
            src = self._by_name.get(impl.op.inputs[0])
            while src is not None and src.type_name == "reshape":
                src = self._by_name.get(src.op.inputs[0])
            if src is not None and getattr(src, "lists_spikes", False):
                src.list_spikes(impl.dense_above())
                impl.source = src

    # ------------------------------------------------------------------------------------------ state
    def reset(self) -> None:
        """Fresh neuron state and readout (a new sample / segment)."""
        self._reset_state_only()
        self._window.clear()
        self._sum = None

    def reset_counters(self) -> None:
        self._totals = _Totals()
        for impl in self.impls:
            self._totals.layers[impl.name] = LayerCount(
                impl.name, impl.op.type, tuple(impl.out_shape), neurons=impl.neurons, dense_ops=impl.dense_ops,
                in_size=impl.in_size if impl.kind.counts_acs or impl.kind is Kind.INPUT else 0,
                real_input=impl.a.get("in_kind") == "real", kind=impl.kind.value)
        self.ctx.dropped_events = 0

    def counts(self) -> tuple:
        """The counters since reset_counters(), as plain numbers: (steps, per layer (spikes, acs, macs,
        in_nonzero)). add_counts() adds such a record: how worker processes' counts are merged."""
        return self._totals.steps, [(c.spikes, c.acs, c.macs, c.in_nonzero) for c in self._totals.layers.values()]

    def add_counts(self, counts: tuple) -> None:
        steps, layers = counts
        if len(layers) != len(self._totals.layers):
            raise GraphError("counts from a different model")
        self._totals.steps += steps
        for c, (spikes, acs, macs, nz) in zip(self._totals.layers.values(), layers):
            c.spikes += spikes
            c.acs += acs
            c.macs += macs
            c.in_nonzero += nz

    @property
    def trace(self) -> bool:
        return self.ctx.trace

    @trace.setter
    def trace(self, on: bool) -> None:
        self.ctx.trace = bool(on)
        self.ctx.traces = {}

    @property
    def traces(self) -> dict:
        """name -> list over steps of (spikes, pre-fire membrane H), runtime layout."""
        return self.ctx.traces

    @property
    def dropped_events(self) -> int:
        return self.ctx.dropped_events

    # ------------------------------------------------------------------------------------------- step
    def warm_up(self, run_once, streaming: bool = True) -> None:
        """Compile (or load from numba's cache) every kernel variant a later step may pick, so none is
        compiled in the middle of a stream. `run_once(dense)` runs a tiny step or clip: empty input and,
        with dense=True, an event at every pixel (the dense paths), each with the neurons' spike lists off
        and on. With several threads it runs once more with every parallel variant forced, and, when
        clips will run in stages, once with the serial kernels the stages run. streaming=False: the
        session will only run clips, so when those are staged only the serial kernels are compiled
        (half the compile time from an empty cache). Then the state and counters are reset."""
        listing = [i for i in self.impls if getattr(i, "idx", None) is not None]
        saved = [i.idx for i in listing]
        staged = self._stage_count(self.T) > 1
        passes = []          # None: as the session runs; else a context to run the pass in
        if streaming or not staged:
            passes.append(None)                           # the current thread count's choices
            if get_threads() > 1:
                passes.append(every_variant)
        if staged:
            passes.append(serial_here)
        self._warming = True
        try:
            for lists in (False, True):
                for i, idx in zip(listing, saved):
                    i.idx = idx if lists else None
                for dense in (False, True):
                    for ctx in passes:
                        if ctx is None:
                            run_once(dense)
                        else:
                            with ctx():
                                run_once(dense)
                        self.reset()
        finally:
            self._warming = False
            for i, idx in zip(listing, saved):
                i.idx = idx
            self.reset()
            self.reset_counters()

    def step(self, x, force: dict | None = None) -> StepOutput:
        """One timestep. x: this step's events (EVENT_DTYPE array) or a frame (C, H, W).
        force: {neuron layer: spikes in the reference layout} — teacher forcing (see INTERNALS.md)."""
        apply_threads()              # numba's thread count is per Python thread: set it in the caller's
        with thread_region():        # serialises parallel steps only under numba's workqueue layer
            return self._step(x, force)

    def _step(self, x, force):
        ctx = self.ctx
        ctx.force = {k: self.from_reference(k, v) for k, v in force.items()} if force else None
        ctx.t = self.t
        values = {"events": x}
        acs = macs = 0
        layers = self._totals.layers
        for impl in self.impls:
            st = impl.stats
            st.acs = st.macs = st.spikes = st.in_nonzero = 0
            if self.profile:
                t0 = perf_counter()
                values[impl.name] = impl.run([values[s] for s in impl.op.inputs], ctx)
                self.op_seconds[impl.name] += perf_counter() - t0
            else:
                values[impl.name] = impl.run([values[s] for s in impl.op.inputs], ctx)
            layers[impl.name].add(st)
            acs += st.acs
            macs += st.macs
        self._totals.steps += 1
        logits = np.array(values[self.output], dtype=np.float64).reshape(-1)
        readout = self._read(logits)
        out = StepOutput(logits, readout, self.t, acs, macs)
        self.t += 1
        if self.reset_every and self.t >= self.reset_every:
            self._reset_state_only()
            out.reset_after = True
        return out

    def _read(self, logits: np.ndarray) -> np.ndarray:
        if self.mode == "clip":
            self._sum = logits.copy() if self._sum is None else self._sum + logits
            return self._sum / (self.t + 1)
        self._window.append(logits)
        return np.mean(np.stack(self._window), axis=0)

    def _reset_state_only(self) -> None:
        for impl in self.impls:
            impl.reset()
        self.t = 0
        if self.mode == "clip":
            self._sum = None

    # ------------------------------------------------------------------------------------------- clip
    def run_clip(self, events=None, frames=None) -> ClipResult:
        """One sample in clip mode: framed by the model's reference rule, T steps from a fresh state.
        Give either the sample's events or precomputed frames (T, C, H, W) in the reference layout."""
        from .framing import FrameSpec, event_bins, clip_frames

        framing = self.meta.get("framing", {})
        if framing.get("kind") == "time_window":   # NIR-imported models: one step per fixed time window
            from .nir.run import time_window_steps
            return self._run_steps(list(frames) if frames is not None else time_window_steps(events, framing))
        spec = FrameSpec.from_dict(self.meta["frame"])
        # converted (CSDformer) models take their input in the first `input_steps` steps and need
        # the remaining steps to let it propagate; every other family has input_steps == T
        n_in = int(self.meta.get("input_steps", self.T))
        if frames is None:
            if spec.resize == "antialias":
                frames = clip_frames(events, spec, dtype=self.dtype)
                steps = list(frames)
            else:
                steps = list(event_bins(events, n_in))
        else:
            steps = list(frames)
        if len(steps) == n_in < self.T:
            empty = steps[0][:0] if steps[0].dtype.names else np.zeros_like(steps[0])
            steps += [empty] * (self.T - n_in)
        if len(steps) != self.T:
            raise GraphError(f"a clip has {self.T} steps for this model, got {len(steps)}")
        return self._run_steps(steps)

    def _run_steps(self, steps: list) -> ClipResult:
        """One clip's steps from a fresh state; the readout is the mean of the step outputs. With several
        stages it runs staged (evrt/stages.py run_clip: the first two such clips run on one thread and
        time the ops the stages are cut by)."""
        if not steps:
            raise EventError("the clip has no events (no time window to run)")
        self.reset()
        saved, self.reset_every = self.reset_every, None
        try:
            k = self._stage_count(len(steps))
            if k == 1:
                logits, acs, macs = self._run_sequential(steps)
            else:
                logits, acs, macs = staging.run_clip(self, steps, k, _Context)
        finally:
            self.reset_every = saved
        step_logits = np.stack(logits)
        res = ClipResult(step_logits.mean(axis=0), step_logits, int(sum(acs)), int(sum(macs)))
        self.reset()
        return res

    def plan_stages(self, k: int, costs=None):
        """Cut the graph into k stages now, balanced by `costs` (one number per op, in graph order; None:
        every op alike) instead of by measured times; the plan is kept until the stage count changes."""
        costs = [1.0] * len(self.impls) if costs is None else [float(c) for c in costs]
        if len(costs) != len(self.impls):
            raise GraphError(f"costs: one per op ({len(self.impls)}), got {len(costs)}")
        k = max(1, min(int(k), len(self.impls)))
        self.stage_plan = staging.StagePlan.cut(self, costs, k, refined=True)
        return self.stage_plan

    def _run_sequential(self, steps: list) -> tuple[list, list, list]:
        outs = [self.step(x) for x in steps]
        return [o.logits for o in outs], [o.acs for o in outs], [o.macs for o in outs]

    def _stage_count(self, n_steps: int) -> int:
        """Stages for a clip of n_steps: 1 (sequential) while tracing, forcing, profiling or warming up."""
        if self._warming or self.ctx.trace or self.ctx.force or self.profile or n_steps < 2:
            return 1
        k = self.stages if self.stages is not None else get_threads()
        return max(1, min(k, len(self.impls)))

    # ------------------------------------------------------------------------------ reference layout
    def _impl(self, name: str):
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no op named {name!r}") from None

    def to_reference(self, name: str, arr: np.ndarray, membrane: bool = False) -> np.ndarray:
        """A neuron layer's runtime array -> the reference model's layout (and membrane scale)."""
        attrs = self._impl(name).op.attrs
        shape = attrs.get("ref_shape")
        out = np.asarray(arr)
        if attrs.get("ref_layout", "channels_first") == "channels_first" and out.ndim > 1:
            out = np.moveaxis(out, -1, 0)
        if shape:
            out = out.reshape(shape)
        if membrane:
            out = out * np.asarray(attrs.get("h_scale", 1.0))
        return out

    def from_reference(self, name: str, arr: np.ndarray) -> np.ndarray:
        impl = self._impl(name)
        attrs = impl.op.attrs
        out = np.asarray(arr)
        if attrs.get("ref_layout", "channels_first") == "channels_first" and len(impl.out_shape) > 1:
            c = impl.out_shape[-1]
            out = np.moveaxis(out.reshape(c, -1), 0, -1)
        return np.ascontiguousarray(out.reshape(impl.out_shape))

    def reference_traces(self) -> dict:
        """name -> (spikes (T, ...), H (T, ...)) in the reference layout, from the recorded trace."""
        out = {}
        for name, steps in self.ctx.traces.items():
            out[name] = (np.stack([self.to_reference(name, s) for s, _ in steps]),
                         np.stack([self.to_reference(name, h, membrane=True) for _, h in steps]))
        return out

    # ----------------------------------------------------------------------------------------- report
    def report(self) -> Report:
        """Counters accumulated since the last reset_counters()."""
        return Report(self._totals.steps, list(self._totals.layers.values()))

    @property
    def state_policy(self) -> str:
        """What happens to the state over a long stream — shown to users by replay/serve."""
        reset = f"state reset every {self.reset_every} steps" if self.reset_every else "state never reset"
        read = ("readout = mean since the last reset" if self.mode == "clip"
                else f"readout = mean of the last {self.T} steps")
        tables = any(i.per_step for i in self.impls)
        held = f"; per-step tables beyond step {self.T - 1} hold the last step's values" \
            if tables and (not self.reset_every or self.reset_every > self.T) else ""
        return f"{self.mode} mode: {read}; {reset}{held}"

    def class_name(self, index: int) -> str:
        return self.classes[index] if 0 <= index < len(self.classes) else str(index)
