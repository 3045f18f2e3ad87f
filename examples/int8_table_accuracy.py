"""Measure the error of int8 tables: NMSE of tmac.matmul (lut="int8") against the float64 product
of the dequantized weights, worst over 3 seeds, for every format, group size and activation group.

    python examples/int8_table_accuracy.py        # prints a markdown table (docs/algorithm.md)
"""

import numpy as np

import tmac
from tmac.metrics import nmse

FORMATS = [(1, "asym"), (2, "asym"), (3, "asym"), (4, "asym"), (1, "sym"), (2, "sym"),
           (3, "sym"), (4, "sym"), (2, "ternary")]
GROUP_SIZES = [32, 64, 128, None]
ACT_GROUPS = [32, 64, "row"]


def worst_nmse(bits, scheme, group_size, act, m=48, k=512, seeds=3):
    worst = 0.0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        w = rng.standard_normal((m, k)).astype(np.float32)
        x = rng.standard_normal((2, k)).astype(np.float32)
        qw = tmac.quantize(w, bits=bits, group_size=group_size, scheme=scheme)
        exact = x.astype(np.float64) @ qw.dequantize().astype(np.float64).T
        y = tmac.matmul(qw, x, backend="reference", act_group_size=act)
        worst = max(worst, nmse(y, exact))
    return worst


def main():
    print("| format | group | act 32 | act 64 | act row |")
    print("|---|---|---|---|---|")
    for bits, scheme in FORMATS:
        groups = [None] if scheme == "ternary" else GROUP_SIZES
        for group_size in groups:
            cells = [f"{worst_nmse(bits, scheme, group_size, act):.1e}" for act in ACT_GROUPS]
            label = "tensor" if scheme == "ternary" else (group_size or "row")
            name = "ternary" if scheme == "ternary" else f"{bits}-bit {scheme}"
            print(f"| {name} | {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
