"""GPTQ: one linear layer's weights quantized column by column, each column's rounding error
pushed onto the columns not yet quantized so that the layer's *outputs* stay close
(Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", arXiv:2210.17323; it builds on OBQ, Frantar & Alistarh
2022, arXiv:2208.11580). The result is the ``affine`` form, nothing new for the kernels.

Shapes and dtypes
-----------------
    inputs   (n, K) or (..., K)  float    calibration inputs X of the layer (rows = tokens)
    H        (K, K)      float64    2 X^T X / n, symmetric positive semi-definite
    w        (M, K)      float32    the weights W (y = x @ W.T)
    codes    (M, K)      uint8      in [0, 2^bits)              } exactly ``affine``'s form:
    scales   (M, K // G) float32    values of float16 numbers   } ``affine.dequantize`` gives
    offsets  (M, K // G) float32    values of float16 numbers   } the quantized weights Q

The objective. For the layer's outputs on the calibration inputs, the squared error
||X W^T - X Q^T||^2 is, per row, (w - q) X^T X (w - q)^T; GPTQ minimises the layer error

    E = tr((W - Q) H (W - Q)^T)                                   (``layer_error``)

greedily. Quantizing column q of every row at once and letting the columns F not yet quantized
absorb the error is OBQ's step, with F^-1 = (H_FF)^-1 the inverse of H restricted to F:

    Q[:, q]  = dequantize(quantize(W[:, q]))           with its group's scale and offset
    err      = (W[:, q] - Q[:, q]) / [F^-1]_qq         (M,)
    W[:, F'] -= err [F^-1]_{q, F'}                      F' = F without q
    F'^-1    = F^-1_{F'F'} - F^-1_{F'q} F^-1_{qF'} / [F^-1]_qq   (Schur complement)

GPTQ's three changes make this fast and stable, and this module does all three:

1. *One fixed order* for every row (so F^-1 is shared by the rows), and the Schur updates are
   read off a single Cholesky factor: with H^-1 = U^T U (U upper triangular), row q of U is
   F^-1_{q, q:} / sqrt([F^-1]_qq) when columns are taken left to right, so the step becomes

       err = (W[:, q] - Q[:, q]) / U[q, q],     W[:, q+1:] -= err U[q, q+1:]

2. *Lazy batch updates*: columns are taken in blocks of ``block_size``; inside a block only
   the block's columns are updated column by column; the errors E (M, B) of the block are
   applied to all later columns at once, W[:, i2:] -= E U[i1:i2, i2:] (one matrix product).
3. *Cholesky in float64 with damping*: lambda = damp * mean(diag H) is added to the diagonal;
   if a Cholesky factorisation still fails, lambda grows x``DAMP_GROWTH`` (a warning says so)
   until it would exceed ``MAX_RELATIVE_DAMP`` * mean(diag H), then a ValueError: never NaN.

Float64 steps: H, its damping, both Cholesky factorisations and the inverse, the working
copy of W and every update. The only float32/float16 values are the affine form's own:
group parameters are fitted by ``affine.quantize`` (float16-valued scale and offset), codes are
``affine``'s nearest levels of the float64 weights, and Q is ``affine.dequantize`` (float32).

Choices
-------
dead columns  A column with H_ii = 0 never saw a non-zero input: its weights do not matter.
              As the paper's code does, H_ii is set to 1 and W's column to 0 before anything
              else (so the damping's mean and the act-order ranking include those 1s).
groups        Without act-order, a group's parameters are fitted (``affine.quantize`` with
              ``fit``, default "lsq") when the sweep reaches the group's first column, from the
              weights *as already updated* by every earlier column, including updates still
              pending in the lazy batch (the paper's code fits from the block-start copy).
act-order     Columns are swept in order of decreasing H_ii (ties: lower index first), the
              columns with the most input energy first while many columns remain to absorb
              their error. Groups stay *static and contiguous*: each group of G consecutive
              columns gets its parameters once, from the original weights, before the sweep
              (the paper code's ``static_groups``). The stored form is then plain ``affine``:
              no permutation to store or apply. The alternative (groups formed in sweep
              order, the permutation stored beside the weights) would make every kernel
              gather activations by a permutation; the kernels read contiguous groups.
group size    G must divide K; G = K is one group per row.
refits        A sweep fits each group's scale and offset to *weights* (the original ones with
              act-order), then chooses codes against the layer error: the parameters are not
              the best ones for the codes it chose. With ``refits`` = r > 0, r times: for the
              codes fixed, every row's scales and offsets are solved for the least layer error
              (``refit_groups``, exact least squares in float64, then rounded to float16), and,
              but for the last time, the columns are swept again with those parameters held
              fixed. Rows are independent in E, so each row keeps the best (codes, parameters)
              of all its iterates: E never rises. On SmolLM2-135M at 3 bits (group 32) 3 refits
              lowered the layer errors by 8-15 % and the perplexity from 1.454x to 1.329x
              float32's (docs/quality.md).

The calibration inputs are the layer's inputs in the model as it will run: in a model,
quantize layers in order and collect each layer's inputs with the earlier layers already
quantized (``Hessian`` accumulates them batch by batch, memory one K x K matrix).
"""

import warnings

import numpy as np

from . import affine

DAMP_GROWTH = 10.0         # lambda's factor after a failed Cholesky factorisation
MAX_RELATIVE_DAMP = 1.0    # lambda never exceeds this times mean(diag H)
REFIT_CHUNK = 1 << 24      # rows refitted at a time hold about this many float64 (memory)


class Hessian:
    """H = 2 X^T X / n over calibration inputs added in batches; float64, one K x K sum."""

    def __init__(self, k):
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k = int(k)
        self.total = np.zeros((self.k, self.k))
        self.count = 0

    def add(self, inputs):
        """Add a batch of inputs, shape (..., K) (every leading index is one sample)."""
        x = np.asarray(inputs, dtype=np.float64)
        if x.ndim < 1 or x.shape[-1] != self.k:
            raise ValueError(f"inputs must have shape (..., {self.k}), got {x.shape}")
        x = x.reshape(-1, self.k)
        if not np.all(np.isfinite(x)):
            raise ValueError("inputs must be finite")
        self.total += x.T @ x
        self.count += x.shape[0]
        return self

    def matrix(self):
        """2 X^T X / n, (K, K) float64."""
        if self.count == 0:
            raise ValueError("inputs: no calibration samples were added")
        return 2.0 * self.total / self.count


def hessian(inputs):
    """H = 2 X^T X / n of calibration inputs (n, K) (or (..., K)) -> (K, K) float64."""
    x = np.asarray(inputs)
    if x.ndim < 1:
        raise ValueError(f"inputs must have shape (..., K), got {x.shape}")
    return Hessian(x.shape[-1]).add(x).matrix()


def layer_error(w, q, h):
    """tr((W - Q) H (W - Q)^T) in float64: the summed squared output error on the calibration
    inputs, times 2 / n. w, q (M, K), h (K, K)."""
    d = np.asarray(w, np.float64) - np.asarray(q, np.float64)
    return float(np.sum((d @ np.asarray(h, np.float64)) * d))


def _check(w, h, bits, group_size, damp, block_size, fit):
    """Validated float32 w and float64 H; one-line ValueErrors naming the argument."""
    w = np.asarray(w)
    if w.ndim != 2 or w.shape[1] == 0 or not np.issubdtype(w.dtype, np.floating):
        raise ValueError(f"w must be a 2-D float array (M, K), got {w.dtype} {w.shape}")
    w = w.astype(np.float32)
    if not np.all(np.isfinite(w)):
        raise ValueError("w must be finite")
    k = w.shape[1]
    h = np.asarray(h)
    if h.shape != (k, k):
        raise ValueError(f"H must be (K, K) = ({k}, {k}) for w of shape {w.shape}, got {h.shape}")
    h = h.astype(np.float64)
    if not np.all(np.isfinite(h)):
        raise ValueError("H must be finite")
    if np.abs(h - h.T).max() > 1e-6 * np.abs(h).max():
        raise ValueError("H must be symmetric (2 X^T X / n)")
    if np.any(np.diag(h) < 0):
        raise ValueError("H must have a non-negative diagonal (2 X^T X / n)")
    if bits not in affine.WIDTHS:
        raise ValueError(f"bits must be one of {affine.WIDTHS}, got {bits!r}")
    if not isinstance(group_size, (int, np.integer)) or group_size < 1 or k % group_size:
        raise ValueError(f"group_size must be a positive integer dividing K = {k}, "
                         f"got {group_size!r}")
    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    if not (isinstance(damp, (int, float, np.floating)) and 0 < damp < np.inf):
        raise ValueError(f"damp must be a positive number, got {damp!r}")
    if fit not in affine.FITS:
        raise ValueError(f"fit must be one of {affine.FITS}, got {fit!r}")
    return w, (h + h.T) / 2


def inverse_cholesky(h, damp):
    """U upper triangular with U^T U = (H + lambda I)^-1, float64, lambda = damp * mean(diag H),
    grown x``DAMP_GROWTH`` (with a warning) while a Cholesky factorisation fails."""
    k = h.shape[0]
    mean_diag = np.mean(np.diag(h))
    relative = float(damp)
    while True:
        try:
            lower = np.linalg.cholesky(h + relative * mean_diag * np.eye(k))
            lower_inv = np.linalg.inv(lower)
            u = np.linalg.cholesky(lower_inv.T @ lower_inv).T       # H^-1 = L^-T L^-1 = U^T U
            if np.all(np.isfinite(u)):
                break
        except np.linalg.LinAlgError:
            pass
        if relative * DAMP_GROWTH > MAX_RELATIVE_DAMP * (1 + 1e-12):
            raise ValueError(f"H is not positive semi-definite: its Cholesky factorisation fails "
                             f"even with damping {relative:g} * mean(diag H)")
        relative *= DAMP_GROWTH
    if relative != damp:
        warnings.warn(f"gptq: H + {damp:g} * mean(diag H) * I is not positive definite; "
                      f"damping raised to {relative:g} * mean(diag H)", stacklevel=3)
    return u


def _fit_group(columns, bits, fit):
    """affine's own fit of one group (M, G) -> (scale, offset) (M,) float32."""
    _, scales, offsets = affine.quantize(columns.astype(np.float32), bits, columns.shape[1], fit)
    return scales[:, 0], offsets[:, 0]


def _quantize_column(column, scale, offset, levels):
    """affine's nearest codes of one float64 column (M,) and their dequantized values."""
    codes = affine._nearest_codes(column[:, None, None], scale[:, None].astype(np.float64),
                                  offset[:, None].astype(np.float64), levels)[:, 0, 0]
    restored = affine.dequantize(codes[:, None], scale[:, None], offset[:, None])[:, 0]
    return codes, restored.astype(np.float64)


def row_errors(w, q, h):
    """(w - q) H (w - q)^T of every row, (M,) float64: ``layer_error`` is their sum."""
    d = np.asarray(w, np.float64) - np.asarray(q, np.float64)
    return np.sum((d @ np.asarray(h, np.float64)) * d, axis=1)


def refit_groups(w, h, codes, group_size):
    """For the codes fixed, each row's scales and offsets of least layer error.

    w (M, K), h (K, K), codes (M, K) -> (scales, offsets) (M, K // G) float32 holding float16
    values. Per row, q = scale_g * code + offset_g on each group g is linear in the 2 G
    unknowns p = (scales, offsets): q = A p, and (w - A p) H (w - A p)^T is least at the
    solution of the normal equations A^T H A p = A^T H w^T, solved in float64 (a ridge of
    1e-12 of the diagonal's mean keeps a group whose codes are all equal solvable).
    """
    m, k = codes.shape
    rows = max(1, REFIT_CHUNK // (k * (k // group_size)))
    scales = np.empty((m, k // group_size), np.float32)
    offsets = np.empty_like(scales)
    for r in range(0, m, rows):
        scales[r:r + rows], offsets[r:r + rows] = _refit_rows(w[r:r + rows], h,
                                                              codes[r:r + rows], group_size)
    return scales, offsets


def _refit_rows(w, h, codes, group_size):
    m, k = codes.shape
    n = k // group_size
    c = codes.astype(np.float64).reshape(m, n, group_size)
    h_rows = h.reshape(n, group_size, k)
    ch = np.matmul(c.transpose(1, 0, 2), h_rows).transpose(1, 0, 2)     # code_g^T H[g, :]
    ch = ch.reshape(m, n, n, group_size)
    normal = np.empty((m, 2 * n, 2 * n))
    normal[:, :n, :n] = np.einsum("mabj,mbj->mab", ch, c)              # code_a^T H_ab code_b
    normal[:, :n, n:] = ch.sum(axis=-1)                                 # code_a^T H_ab 1
    normal[:, n:, :n] = normal[:, :n, n:].transpose(0, 2, 1)
    normal[:, n:, n:] = h.reshape(n, group_size, n, group_size).sum(axis=(1, 3))
    hw = (np.asarray(w, np.float64) @ h).reshape(m, n, group_size)
    rhs = np.concatenate([np.einsum("mgi,mgi->mg", c, hw), hw.sum(axis=-1)], axis=1)
    ridge = 1e-12 * np.trace(normal, axis1=1, axis2=2) / (2 * n)
    normal += ridge[:, None, None] * np.eye(2 * n)
    p = np.linalg.solve(normal, rhs[..., None])[..., 0]
    p = np.clip(np.nan_to_num(p), -affine.FLOAT16_MAX, affine.FLOAT16_MAX)
    return (p[:, :n].astype(np.float16).astype(np.float32),
            p[:, n:].astype(np.float16).astype(np.float32))


def gptq(w, h, bits, group_size, *, act_order=False, damp=0.01, block_size=128, fit="lsq",
         refits=0):
    """GPTQ of w (M, K) against H (K, K) -> (codes (M, K) uint8, scales, offsets (M, K // G)
    float32), ``affine``'s form; ``affine.dequantize`` gives the quantized weights.
    ``refits`` > 0 refits the group parameters to the codes (module docstring, "refits")."""
    w, h = _check(w, h, bits, group_size, damp, block_size, fit)
    if not isinstance(refits, (int, np.integer)) or refits < 0:
        raise ValueError(f"refits must be a non-negative integer, got {refits!r}")
    weights = w.astype(np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    weights[:, dead] = 0.0
    k = w.shape[1]
    order = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(k)
    static = _static_groups(weights, bits, group_size, fit) if act_order else None
    u = inverse_cholesky(h[np.ix_(order, order)], damp)
    best = _sweep(weights, u, order, bits, group_size, fit, static, block_size)
    if refits == 0:
        return best
    best_errors = row_errors(weights, affine.dequantize(*best), h)
    codes = best[0]
    for r in range(refits):
        scales, offsets = refit_groups(weights, h, codes, group_size)
        best, best_errors = _keep_better_rows(best, best_errors, (codes, scales, offsets),
                                              weights, h)
        if r < refits - 1:
            swept = _sweep(weights, u, order, bits, group_size, fit, (scales, offsets),
                           block_size)
            best, best_errors = _keep_better_rows(best, best_errors, swept, weights, h)
            codes = swept[0]
    return best


def _static_groups(weights, bits, group_size, fit):
    """Every group's (scales, offsets) fitted once from the original weights (act-order)."""
    m, k = weights.shape
    scales = np.zeros((m, k // group_size), np.float32)
    offsets = np.zeros_like(scales)
    for g in range(k // group_size):
        cols = slice(g * group_size, (g + 1) * group_size)
        scales[:, g], offsets[:, g] = _fit_group(weights[:, cols], bits, fit)
    return scales, offsets


def _keep_better_rows(best, best_errors, candidate, weights, h):
    """Per row, the (codes, scales, offsets) of smaller layer error (``best`` on ties)."""
    errors = row_errors(weights, affine.dequantize(*candidate), h)
    better = errors < best_errors
    kept = tuple(np.where(better[:, None], c, b) for c, b in zip(candidate, best))
    return kept, np.where(better, errors, best_errors)


def _sweep(weights, u, order, bits, group_size, fit, static, block_size):
    """One GPTQ sweep over the columns in ``order`` -> (codes, scales, offsets). With
    ``static`` = (scales, offsets) every group keeps those; without, each group is fitted when
    the sweep reaches its first column (``order`` must then be 0, 1, ..., K - 1)."""
    m, k = weights.shape
    levels = 2**bits
    if static is None:
        scales = np.zeros((m, k // group_size), np.float32)
        offsets = np.zeros_like(scales)
    else:
        scales, offsets = (a.copy() for a in static)
    group_of = order // group_size      # group of the column at each sweep position
    work = weights[:, order]            # sweep order from here on: position j is column order[j]
    codes = np.zeros((m, k), np.uint8)
    for i1 in range(0, k, block_size):
        i2 = min(i1 + block_size, k)
        block = work[:, i1:i2]          # a view: updated in place column by column
        errors = np.zeros((m, i2 - i1))
        for i in range(i2 - i1):
            j = i1 + i
            g = group_of[j]
            if static is None and j % group_size == 0:
                end = j + group_size    # the group's weights with every earlier column's update,
                pending = errors[:, :i] @ u[i1:j, i2:end]       # lazy ones included
                current = np.hstack([block[:, i:end - i1], work[:, i2:end] - pending])
                scales[:, g], offsets[:, g] = _fit_group(current, bits, fit)
            codes[:, j], restored = _quantize_column(block[:, i], scales[:, g], offsets[:, g],
                                                     levels)
            errors[:, i] = (block[:, i] - restored) / u[j, j]
            block[:, i + 1:] -= np.outer(errors[:, i], u[j, j + 1:i2])
        work[:, i2:] -= errors @ u[i1:i2, i2:]
    out = np.empty_like(codes)
    out[:, order] = codes
    return out, scales, offsets
