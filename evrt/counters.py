"""Per-layer counters and the energy report (docs/SEMANTICS.md, "Counting").

ACs and MACs are what the kernels actually performed. Beside them the report gives the papers'
estimate: input firing rate × the dense op count of the layer, so users can see the difference.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PJ_PER_AC = 0.9    # 45 nm, 32-bit float add
PJ_PER_MAC = 4.6   # 45 nm, 32-bit float multiply-add


@dataclass
class LayerCount:
    name: str
    type: str
    shape: tuple
    neurons: int = 0
    spikes: int = 0
    acs: int = 0
    macs: int = 0
    dense_ops: int = 0        # per step
    in_nonzero: int = 0       # summed over steps
    in_size: int = 0          # per step
    real_input: bool = False  # the papers count such a layer as dense MACs
    kind: str = ""            # the op's declared kind (evrt.ops.Kind): input, synaptic, neuron, ...

    def add(self, stats) -> None:
        self.spikes += stats.spikes
        self.acs += stats.acs
        self.macs += stats.macs
        self.in_nonzero += stats.in_nonzero


@dataclass
class Report:
    steps: int
    layers: list[LayerCount] = field(default_factory=list)

    def rows(self) -> list[dict]:
        out = []
        for l in self.layers:
            rate = l.spikes / (l.neurons * self.steps) if l.neurons and self.steps else None
            in_rate = l.in_nonzero / (l.in_size * self.steps) if l.in_size and self.steps else 0.0
            est = (l.dense_ops * self.steps) if l.real_input else in_rate * l.dense_ops * self.steps
            out.append({
                "name": l.name, "type": l.type, "kind": l.kind, "shape": list(l.shape), "neurons": l.neurons,
                "spikes": l.spikes, "firing_rate": rate, "acs": l.acs, "macs": l.macs,
                "energy_pj": l.acs * PJ_PER_AC + l.macs * PJ_PER_MAC,
                "dense_ops": l.dense_ops * self.steps, "input_rate": in_rate,
                "paper_estimate_ops": est,
                "paper_estimate_pj": est * (PJ_PER_MAC if l.real_input else PJ_PER_AC),
            })
        return out

    def totals(self) -> dict:
        rows = self.rows()
        neurons = sum(r["neurons"] for r in rows)
        spikes = sum(r["spikes"] for r in rows)
        return {
            "steps": self.steps,
            "acs": sum(r["acs"] for r in rows),
            "macs": sum(r["macs"] for r in rows),
            "energy_pj": sum(r["energy_pj"] for r in rows),
            "dense_macs": sum(r["dense_ops"] for r in rows),
            "dense_energy_pj": sum(r["dense_ops"] for r in rows) * PJ_PER_MAC,
            "paper_estimate_pj": sum(r["paper_estimate_pj"] for r in rows),
            "spikes": spikes,
            "firing_rate": spikes / (neurons * self.steps) if neurons and self.steps else None,
        }

    def to_dict(self) -> dict:
        return {"layers": self.rows(), "totals": self.totals()}

    def to_text(self) -> str:
        lines = [f"{'layer':34s} {'type':10s} {'rate':>7s} {'ACs':>12s} {'MACs':>10s} {'energy nJ':>10s} "
                 f"{'paper nJ':>10s}"]
        for r in self.rows():
            if not (r["neurons"] or r["acs"] or r["macs"] or r["dense_ops"]):
                continue
            rate = f"{100 * r['firing_rate']:6.2f}%" if r["firing_rate"] is not None else ""
            lines.append(f"{r['name'][:34]:34s} {r['type'][:10]:10s} {rate:>7s} {r['acs']:12d} {r['macs']:10d} "
                         f"{r['energy_pj'] / 1e3:10.2f} {r['paper_estimate_pj'] / 1e3:10.2f}")
        t = self.totals()
        lines.append(f"total over {t['steps']} steps: {t['acs']} ACs, {t['macs']} MACs, "
                     f"{t['energy_pj'] / 1e6:.3f} uJ measured; paper-style estimate {t['paper_estimate_pj'] / 1e6:.3f} uJ; "
                     f"dense {t['dense_energy_pj'] / 1e6:.3f} uJ")
        return "\n".join(lines)


__all__ = ["PJ_PER_AC", "PJ_PER_MAC", "LayerCount", "Report"]
