"""Mixed precision under a bits budget: each matrix's width chosen from a measured sensitivity.

Sensitivity. For every matrix (the head, and each layer's qkv, o, gate_up, down) and every
measured width b, the matrix alone is quantized (affine, lsq fit, the plan's group size) while
every other matrix stays float32, and the model's mean negative log-likelihood on calibration
tokens is measured (llama.cpp's perplexity method, the second half of each sequence scored):

    cost[m][b] = NLL(m at b bits, the rest float32) - NLL(all float32)          (nats / token)

Widths above the measured ones are taken as cost[m][b_max] / 4^(b - b_max) (one more bit
halves the step, quarters the squared error), never measured.

Allocation. Assuming the costs add up over matrices, the plan minimises sum_m cost[m][b_m]
subject to sum_m bytes_m(b_m) <= budget * weights / 8, bytes counted as stored: codes at b bits
and a float16 scale and offset per group, (b + 32 / G) / 8 bytes per weight. It is a
multiple-choice knapsack, solved by dynamic programming over the budget in units: the greatest
common divisor of every matrix's size in bits at every width when the budget holds at most
``MAX_UNITS`` of those (exact), else ``RESOLUTION`` equal units with each size rounded up (the
plan never exceeds the budget, and misses the optimum by at most what 1 / RESOLUTION of the
budget could buy).

Where additivity fails: 2-bit matrices. On SmolLM2-135M (lsq fits, 4.5 bpw), the plan that
allowed 2 bits put 19 matrices there and predicted an NLL increase of 0.045 (1.05x f32); the
model measured 2.62x on the shipped text. Each 2-bit matrix alone costs little; many together
do not add, they compound. Plans therefore start at ``MIN_BITS`` = 3 unless asked otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tmac.model import reference as spec
from tmac.model.formats import MODEL_FITS, ModelFormat

MEASURED_WIDTHS = (2, 3, 4)
RESOLUTION = 20000            # the budget in this many units, when sizes share no coarse unit
MAX_UNITS = 200000            # the most units the allocation's table may have
WIDTHS = (2, 3, 4, 5, 6, 8)
MIN_BITS = 3                  # 2-bit matrices compound far beyond their summed costs (below)


@dataclass
class Plan:
    """Each matrix's width at one group size, with the measured costs behind the choice."""
    bits: dict                      # matrix name -> width
    group_size: int
    weights: dict                   # matrix name -> number of weights (M * K)
    cost: dict = field(default_factory=dict)   # matrix name -> {width: nats per token}

    def bytes(self) -> int:
        return sum(stored_bytes(self.weights[m], b, self.group_size) for m, b in self.bits.items())

    def bits_per_weight(self) -> float:
        return 8 * self.bytes() / sum(self.weights.values())

    def predicted_cost(self) -> float:
        return sum(self.cost[m][b] for m, b in self.bits.items()) if self.cost else math.nan

    def formats(self, fit=None) -> dict:
        """{matrix name: ModelFormat} for ``runtime.prepare(matrix_formats=...)``; the head
        takes its own default fit under a whole-model fit (GPTQ fits the layers only)."""
        return {m: ModelFormat(f"w{b}", b, self.group_size, "affine",
                               fit=None if m == "head" and fit in MODEL_FITS else fit)
                for m, b in self.bits.items()}

    def as_dict(self) -> dict:
        """JSON-ready: the widths, the group size, the bits per weight and the costs."""
        return {"group_size": self.group_size, "bits_per_weight": self.bits_per_weight(),
                "bits": self.bits, "predicted_nll_increase": self.predicted_cost(),
                "cost": {m: {str(b): v for b, v in c.items()} for m, c in self.cost.items()}}

    def widths_by_kind(self) -> dict:
        """{"head" | "qkv" | "o" | "gate_up" | "down": {width: count}}: the plan at a glance."""
        out = {}
        for m, b in self.bits.items():
            kind = m.split(".")[-1]
            out.setdefault(kind, {}).setdefault(b, 0)
            out[kind][b] += 1
        return {k: dict(sorted(v.items())) for k, v in out.items()}


def stored_bytes(n_weights: int, bits: int, group_size: int) -> float:
    """Bytes of n weights at ``bits`` in affine groups of ``group_size`` (float16 scale, offset)."""
    return n_weights * (bits + 32 / group_size) / 8


def matrix_sizes(weights) -> dict:
    """{matrix name: number of weights} in ``float_matrices``' names."""
    sizes = {"head": weights.output.size}
    for i, lw in enumerate(weights.layers):
        sizes[f"{i}.qkv"] = lw["wq"].size + lw["wk"].size + lw["wv"].size
        sizes[f"{i}.o"] = lw["wo"].size
        sizes[f"{i}.gate_up"] = lw["w_gate"].size + lw["w_up"].size
        sizes[f"{i}.down"] = lw["w_down"].size
    return sizes


def float_matrices(weights) -> dict:
    """{matrix name: float32 (M, K)} of a LlamaWeights, Q/K/V and gate/up stacked as the
    runtime stacks them; "head" is the output matrix."""
    mats = {"head": np.asarray(weights.output, np.float32)}
    for i, lw in enumerate(weights.layers):
        mats[f"{i}.qkv"] = np.vstack([lw["wq"], lw["wk"], lw["wv"]]).astype(np.float32)
        mats[f"{i}.o"] = np.asarray(lw["wo"], np.float32)
        mats[f"{i}.gate_up"] = np.vstack([lw["w_gate"], lw["w_up"]]).astype(np.float32)
        mats[f"{i}.down"] = np.asarray(lw["w_down"], np.float32)
    return mats


def sensitivity(weights, ids, group_size: int, widths=MEASURED_WIDTHS, fit="lsq",
                progress=None) -> dict:
    """{matrix name: {width: NLL increase, nats per token}} measured on calibration ``ids``
    (S, T): one matrix at a time quantized (its dequantized values in the float32 model).
    The float model runs once, keeping each layer's input, so a matrix of layer i costs the
    layers from i on (numpy float32, the same steps as tmac.model.gptq)."""
    ids = np.asarray(ids, np.int64)
    c = weights.config
    floats = float_matrices(weights)
    cos, sin = spec.rope_tables(ids.shape[1], c.rope_dim, c.rope_base)
    inputs = [weights.embed[ids].astype(np.float32)]          # inputs[i]: layer i's input
    for i, lw in enumerate(weights.layers):
        inputs.append(_block(inputs[-1], lw, floats, i, c, cos, sin))
    base = _nll(inputs[-1], weights, floats["head"], ids)
    cost = {}
    steps, done = len(floats) * len(widths), 0
    for name, w in floats.items():
        first = len(weights.layers) if name == "head" else int(name.split(".")[0])
        cost[name] = {}
        for b in widths:
            trial = dict(floats)
            trial[name] = ModelFormat(f"w{b}", b, group_size, "affine", fit=fit).quantize(w) \
                .dequantize()
            x = inputs[first]
            for i in range(first, len(weights.layers)):
                x = _block(x, weights.layers[i], trial, i, c, cos, sin)
            cost[name][b] = _nll(x, weights, trial["head"], ids) - base
            done += 1
            if progress:
                progress(done, steps)
    return cost


def _block(x, lw, floats, i, c, cos, sin):
    """One transformer block in float32 numpy on (S, T, D) hidden states."""
    from tmac.model.gptq import _attention

    h = spec.rms_norm(x, lw["attn_norm"], c.norm_eps)
    x = x + _attention(h, lw, c, floats[f"{i}.qkv"], cos, sin) @ floats[f"{i}.o"].T
    h = spec.rms_norm(x, lw["ffn_norm"], c.norm_eps)
    g = h @ floats[f"{i}.gate_up"].T
    return x + (spec.silu(g[..., :c.ffn_dim]) * g[..., c.ffn_dim:]) @ floats[f"{i}.down"].T


def _nll(x, weights, head, ids):
    """Mean NLL (nats) of each sequence's second half, as tmac.model.generate.perplexity scores:
    token j + 1 given tokens 0..j for j in [T/2, T - 1)."""
    t = ids.shape[1]
    first = t // 2
    h = spec.rms_norm(x[:, first:t - 1], weights.output_norm, weights.config.norm_eps)
    z = (h @ head.T).astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    target = ids[:, first + 1:t]
    picked = np.take_along_axis(z, target[..., None], axis=-1)[..., 0]
    return float(np.mean(np.log(np.exp(z).sum(axis=-1)) - picked))


def extend(cost: dict, widths=WIDTHS) -> dict:
    """Costs at every width of ``widths``: measured ones as they are, wider ones extrapolated
    (cost at the widest measured / 4 per extra bit), narrower unmeasured ones left out."""
    out = {}
    for name, by_width in cost.items():
        top = max(by_width)
        out[name] = {b: (by_width[b] if b in by_width else by_width[top] / 4.0 ** (b - top))
                     for b in widths if b in by_width or b > top}
    return out


def allocate(cost: dict, n_weights: dict, budget_bpw: float, group_size: int) -> Plan:
    """The plan of least summed cost whose bytes fit ``budget_bpw`` bits per weight over all
    matrices in ``cost`` (module docstring). ValueError when even the narrowest widths do not."""
    names = list(cost)
    total = sum(n_weights[m] for m in names)
    budget = budget_bpw * total / 8
    least = sum(stored_bytes(n_weights[m], min(cost[m]), group_size) for m in names)
    if least > budget * (1 + 1e-12):
        raise ValueError(f"bpw: {budget_bpw:g} bits per weight is below the narrowest plan "
                         f"({8 * least / total:.3f} bits per weight at group {group_size})")
    item_bits = {m: {b: round(8 * stored_bytes(n_weights[m], b, group_size)) for b in cost[m]}
                 for m in names}                   # whole numbers: G divides every row
    common = math.gcd(*(v for c in item_bits.values() for v in c.values()))
    if budget_bpw * total / common <= MAX_UNITS:   # exact: sizes in units of their common divisor
        unit, capacity = common, int(math.floor(budget_bpw * total / common + 1e-9))
    else:                                          # each size rounded up: never over the budget
        unit, capacity = budget_bpw * total / RESOLUTION, RESOLUTION
    best = np.zeros(capacity + 1)                  # least cost of the matrices so far, per size
    choices = []
    for m in names:
        widths = sorted(cost[m])
        units = [math.ceil(item_bits[m][b] / unit - 1e-9) for b in widths]
        new = np.full(capacity + 1, np.inf)
        choice = np.full(capacity + 1, -1, np.int8)
        for k, (b, u) in enumerate(zip(widths, units)):
            if u > capacity:
                continue
            candidate = np.full(capacity + 1, np.inf)
            candidate[u:] = best[:capacity + 1 - u] + cost[m][b]
            better = candidate < new
            new[better], choice[better] = candidate[better], k
        best = new
        choices.append((widths, units, choice))
    bits, c = {}, capacity
    for m, (widths, units, choice) in zip(reversed(names), reversed(choices)):
        k = int(choice[c])
        bits[m] = widths[k]
        c -= units[k]
    return Plan({m: bits[m] for m in names}, group_size, {m: n_weights[m] for m in names}, cost)


SENSITIVITY_SEQUENCES = 2     # calibration sequences the sensitivity is measured on


def cached_sensitivity(model_path, weights, ids, group_size: int, fit="lsq",
                       progress=None) -> dict:
    """``sensitivity`` of the model at ``model_path``, cached under <cache>/calibration keyed by
    the file, the token ids, the group size, the fit and this module's source."""
    import hashlib
    import json
    from pathlib import Path

    from tmac.model import fetch

    ids = np.ascontiguousarray(ids, np.int64)
    st = Path(model_path).stat()
    key = json.dumps({"gguf": str(Path(model_path).resolve()), "size": st.st_size,
                      "mtime": st.st_mtime_ns, "ids": hashlib.sha256(ids.tobytes()).hexdigest(),
                      "shape": list(ids.shape), "group": group_size, "fit": fit,
                      "code": _measuring_code_digest()},
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = fetch.cache_dir() / "calibration" / f"{Path(model_path).stem}-sensitivity-{digest}.json"
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            return {m: {int(b): float(v) for b, v in c.items()} for m, c in stored.items()}
        except (OSError, ValueError, AttributeError):
            pass
    cost = sensitivity(weights, ids, group_size, fit=fit, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    part.write_text(json.dumps({m: {str(b): v for b, v in c.items()} for m, c in cost.items()}))
    part.replace(path)
    return cost


def _measuring_code_digest():
    """Hash of the code a measured cost depends on (not the rest of this module)."""
    import hashlib
    import inspect

    from tmac.model import gptq
    from tmac.reference import affine

    parts = [sensitivity, _block, _nll, gptq._attention, affine.quantize, affine.dequantize]
    text = "".join(inspect.getsource(f) for f in parts) + str(SENSITIVITY_SEQUENCES)
    return hashlib.sha256(text.encode()).hexdigest()


def plan_for_model(model_path, weights, ids, budget_bpw: float, group_size: int,
                   min_bits: int = MIN_BITS, progress=None) -> Plan:
    """The plan of every matrix of ``weights`` (head included) under ``budget_bpw``, widths
    ``min_bits`` and up: the sensitivity on the first ``SENSITIVITY_SEQUENCES`` calibration
    sequences, then ``allocate``."""
    if min_bits not in WIDTHS:
        raise ValueError(f"min_bits must be one of {WIDTHS}, got {min_bits!r}")
    cost = cached_sensitivity(model_path, weights, ids[:SENSITIVITY_SEQUENCES], group_size,
                              progress=progress)
    allowed = {m: {b: v for b, v in c.items() if b >= min_bits} for m, c in extend(cost).items()}
    return allocate(allowed, matrix_sizes(weights), budget_bpw, group_size)
