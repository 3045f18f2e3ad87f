"""FP4 accuracy study and FP4 kernel bench (``tmac fp4-study``, ``tmac fp4-bench``).

Accuracy: weight NMSE and output NMSE (random N(0, 1) activations, float64 products of the
dequantized weights, so only the weight format is measured) for 4-bit formats at group sizes
32/64/128, on synthetic Gaussian and Laplacian weights, and on any 2-D ``.npy`` matrices given.

Bench: the three dequantize-then-multiply kernels of ``tmac.kernels.fp4`` (M0E4 bit trick, int4
int-to-float, E2M1 table) and the 4-bit LUT kernel on the same shape, median wall time.
"""

import numpy as np

from tmac.extras import MissingExtra, hint
from tmac.metrics import nmse
from tmac.reference import e2m1, m0e4, quantize

GROUP_SIZES = (32, 64, 128)
DISTRIBUTIONS = ("gaussian", "laplacian")


def _int4(scheme):
    def run(w, g):
        return quantize.dequantize(*quantize.quantize(w, 4, g, scheme))
    return run


def _m0e4(fit):
    def run(w, g):
        return m0e4.dequantize(*m0e4.quantize(w, g, fit))
    return run


def _e2m1(rule):
    def run(w, g):
        return e2m1.dequantize(*e2m1.quantize(w, g, rule))
    return run


# name -> (dequantized weights from (w, group_size), float32 parameters stored per group)
FORMATS = {
    "int4 asym (GPTQ, range search)": (_int4("asym"), 2),
    "int4 sym (Q4_0-like)": (_int4("sym"), 1),
    "M0E4 minmax": (_m0e4("minmax"), 2),
    "M0E4 lsq": (_m0e4("lsq"), 2),
    "E2M1 absmax scale": (_e2m1("absmax"), 1),
    "E2M1 pow2 scale (MX)": (_e2m1("pow2"), 1),
}


def synthetic(distribution, m, k, seed):
    """(M, K) float32 weights with unit variance: N(0, 1) or Laplace(0, 1/sqrt(2))."""
    rng = np.random.default_rng(seed)
    if distribution == "gaussian":
        return rng.standard_normal((m, k)).astype(np.float32)
    return rng.laplace(scale=1 / np.sqrt(2), size=(m, k)).astype(np.float32)


def measure(w, group_size, formats=None, n_tokens=16, seed=0):
    """{format: (weight NMSE, output NMSE)} for one matrix w (M, K)."""
    x = np.random.default_rng(seed + 1000).standard_normal((n_tokens, w.shape[1]))
    exact = x @ w.astype(np.float64).T
    out = {}
    for name in formats or FORMATS:
        wq = FORMATS[name][0](w, group_size)
        out[name] = (nmse(wq, w), nmse(x @ wq.astype(np.float64).T, exact))
    return out


def smollm2_matrices():
    """Real weights from the fetched SmolLM2-135M GGUF (``tmac fetch smollm2``), as (label, (M, K)):
    the token embedding, stored as Q8_0 (8-bit, so close to the float weights; first 4096 rows),
    and one feed-forward matrix stored as Q4_1 (already on a 4-bit grid per 32 weights)."""
    from tmac.model import fetch, loader

    if not fetch.is_fetched("smollm2"):
        raise ValueError("--smollm2 needs the model: run `tmac fetch smollm2` first")
    weights = loader.load(fetch.resolve("smollm2")).weights
    return [("SmolLM2 token_embd (Q8_0, 4096 rows)", weights.embed[:4096]),
            ("SmolLM2 blk.15.ffn_down (Q4_1)", weights.layers[15]["w_down"])]


def study(m=256, k=4096, seeds=(0, 1), group_sizes=GROUP_SIZES, npy=(), real=()):
    """Rows (source, group, format, bits/weight, weight NMSE, output NMSE), means over seeds.

    ``real``: (label, (M, K) matrix) pairs measured beside the synthetic ones."""
    sources = [(d, [synthetic(d, m, k, s) for s in seeds]) for d in DISTRIBUTIONS]
    sources += [(label, [np.asarray(w, np.float32)]) for label, w in real]
    for path in npy:
        w = np.load(path).astype(np.float32)
        if w.ndim != 2:
            raise ValueError(f"{path}: expected a 2-D weight matrix, got shape {w.shape}")
        sources.append((str(path), [w]))
    rows = []
    for source, mats in sources:
        for g in group_sizes:
            if mats[0].shape[1] % g:
                continue
            results = [measure(w, g, seed=i) for i, w in enumerate(mats)]
            for name, (_, n_params) in FORMATS.items():
                wn = float(np.mean([r[name][0] for r in results]))
                on = float(np.mean([r[name][1] for r in results]))
                rows.append((source, g, name, 4 + 32 * n_params / g, wn, on))
    return rows


def markdown(rows):
    lines = ["| weights | group | format | bits/weight | weight NMSE | output NMSE |",
             "|---|---|---|---|---|---|"]
    for source, g, name, bpw, wn, on in rows:
        lines.append(f"| {source} | {g} | {name} | {bpw:.2f} | {wn:.3e} | {on:.3e} |")
    return "\n".join(lines)


def update_document(path, text, marker="fp4-study"):
    """Replace the text between the ``<!-- marker:begin -->`` and ``<!-- marker:end -->`` lines."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    with open(path) as f:
        doc = f.read()
    if begin not in doc or end not in doc:
        raise ValueError(f"{path} has no {begin} ... {end} markers")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(f"{head}{begin}\n{text}\n{end}{tail}")


def plot(rows, path):
    """Weight NMSE vs group size, one panel per weight source (needs matplotlib: the fp4 extra)."""
    try:
        import matplotlib
    except ImportError as error:                      # pragma: no cover - optional extra
        raise MissingExtra(hint("fp4", "--plot")) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = list(dict.fromkeys(r[0] for r in rows))
    fig, axes = plt.subplots(1, len(sources), figsize=(5 * len(sources), 4), sharey=True, squeeze=False)
    for ax, source in zip(axes[0], sources):
        for name in FORMATS:
            pts = [(g, wn) for s, g, n, _, wn, _ in rows if s == source and n == name]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(GROUP_SIZES), [str(g) for g in GROUP_SIZES])
        ax.set_yscale("log")
        ax.set_title(f"{source} weights")
        ax.set_xlabel("group size")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("weight NMSE")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- bench ------------------------------------------------------------------------------------

def bench(m=4096, k=4096, group_size=128, repeats=21, threads=1, seed=0):
    """Wall time of the FP4 dequant kernels, the 4-bit LUT kernel and numpy, one GEMV each.

    Each kernel is timed alone ("hot": the same weights every call) after two warm-up calls
    (compile or cache load); numpy runs last.
    Returns [(name, median microseconds, minimum microseconds)].
    """
    import tmac
    from tmac.kernels import fp4, num_threads

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((m, k)).astype(np.float32)
    x = rng.standard_normal((1, k)).astype(np.float32)
    codes = rng.integers(0, 16, (m, k), dtype=np.uint8)
    params = rng.uniform(0.5, 1.5, (m, k // group_size)).astype(np.float32)
    packed, p1, p2 = fp4.pack(codes), fp4.pack_params(params), fp4.pack_params(-params)
    qw = tmac.quantize(w, bits=4, group_size=group_size, scheme="m0e4")
    kernels = [
        ("M0E4 bit-trick dequant GEMV", lambda: fp4.m0e4_matmul(packed, p1, p2, x, m)),
        ("int4 int-to-float dequant GEMV", lambda: fp4.int4_matmul(packed, p1, p2, x, m)),
        ("E2M1 bit-decode dequant GEMV", lambda: fp4.e2m1_matmul(packed, p1, x, m)),
        ("LUT 4-bit GEMV (int8 tables, M0E4 weights)", lambda: tmac.matmul(qw, x, threads=threads)),
    ]
    with num_threads(threads):
        rows = _timed(kernels, repeats)
    # numpy last: OpenBLAS worker threads spin after each call and would slow whatever runs next
    return rows + _timed([("numpy float32 W @ x", lambda: w @ x[0])], repeats)


def _timed(runs, repeats):
    """[(name, median us, min us)]: each run alone, two warm-up calls then ``repeats`` timed calls.

    (Interleaving the kernels call by call was tried: each then slows the next one down, the
    LUT kernel up to 2x, so every kernel is timed in its own block, "hot".)"""
    from tmac.timing import sample_seconds

    rows = []
    for name, run in runs:
        spent = sample_seconds(run, repeats, warmup=2)
        rows.append((name, float(np.median(spent)) * 1e6, float(np.min(spent)) * 1e6))
    return rows
