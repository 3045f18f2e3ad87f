"""GPTQ (tmac.reference.gptq) against an independent float64 re-derivation: a plain,
non-blocked OBQ loop that inverts H once and removes each quantized column from the inverse by
its Schur complement (no Cholesky, no lazy batches). Both use affine's fit and rounding, so
codes, scales, offsets and the layer error must agree; measured: no code flips on any case
below (a flip at an exact rounding tie would be allowed by ``MAX_FLIPS``)."""

import warnings

import numpy as np
import pytest

from tmac.reference import affine, gptq

MAX_FLIPS = 0      # codes allowed to differ (ties of rint at half a step); none measured


def calibration(rng, n, k):
    """Correlated inputs X = Z A: H = 2 A^T Z^T Z A / n is far from diagonal."""
    a = rng.standard_normal((k, k)) / np.sqrt(k) + np.eye(k) * 0.1
    a[:, rng.permutation(k)[: k // 8]] *= 4.0              # a few loud input channels
    return rng.standard_normal((n, k)) @ a


def naive_gptq(w, h, bits, group_size, act_order, damp=0.01, fit="lsq"):
    """Column by column in float64: H^-1 once, then per column q (in sweep order) quantize,
    err = (w_q - q_q) / Hinv[q, q], w[:, rest] -= err Hinv[q, rest], and
    Hinv[rest, rest] -= Hinv[rest, q] Hinv[q, rest] / Hinv[q, q]."""
    m, k = w.shape
    w = w.astype(np.float64)
    h = h.astype(np.float64)
    for c in range(k):                                     # dead inputs: H_cc = 1, weights 0
        if h[c, c] == 0:
            h[c, c] = 1.0
            w[:, c] = 0.0
    h = h + damp * np.trace(h) / k * np.eye(k)
    hinv = np.linalg.inv(h)
    order = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(k)
    scales = np.zeros((m, k // group_size), np.float32)
    offsets = np.zeros((m, k // group_size), np.float32)
    if act_order:
        for g in range(k // group_size):
            _, s, o = affine.quantize(w[:, g * group_size:(g + 1) * group_size].astype(np.float32),
                                      bits, group_size, fit)
            scales[:, g], offsets[:, g] = s[:, 0], o[:, 0]
    codes = np.zeros((m, k), np.uint8)
    for t, q in enumerate(order):
        g = q // group_size
        if not act_order and q % group_size == 0:
            columns = w[:, q:q + group_size].astype(np.float32)
            _, s, o = affine.quantize(columns, bits, group_size, fit)
            scales[:, g], offsets[:, g] = s[:, 0], o[:, 0]
        s, o = scales[:, g].astype(np.float64), offsets[:, g].astype(np.float64)
        code = np.clip(np.rint((w[:, q] - o) / np.where(s == 0, 1, s)), 0, 2**bits - 1)
        codes[:, q] = np.where(s == 0, 0, code)
        restored = affine.dequantize(codes[:, q:q + 1], scales[:, g:g + 1], offsets[:, g:g + 1])
        err = (w[:, q] - restored[:, 0]) / hinv[q, q]
        rest = order[t + 1:]
        w[:, rest] -= np.outer(err, hinv[q, rest])
        hinv[np.ix_(rest, rest)] -= np.outer(hinv[rest, q], hinv[q, rest]) / hinv[q, q]
    return codes, scales, offsets


SHAPES = [(16, 64, 8), (32, 128, 16), ("row", 96, 12), (32, 256, 32), (16, 192, 8),
          ("row", 256, 16)]                                 # (group size, K, M)
CASES = [(bits, g, k, m) for bits in (2, 3, 4) for g, k, m in SHAPES]


@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("bits,group,k,m", CASES)
def test_gptq_equals_column_by_column_obq(bits, group, k, m, act_order):
    rng = np.random.default_rng(1000 * bits + k + m)
    group_size = k if group == "row" else group
    w = rng.standard_normal((m, k)).astype(np.float32)
    h = gptq.hessian(calibration(rng, 4 * k, k))
    codes, scales, offsets = gptq.gptq(w, h, bits, group_size, act_order=act_order, block_size=48)
    want = naive_gptq(w, h, bits, group_size, act_order)
    assert codes.dtype == np.uint8 and codes.shape == (m, k) and codes.max() < 2**bits
    assert scales.dtype == offsets.dtype == np.float32 and scales.shape == (m, k // group_size)
    assert np.count_nonzero(codes != want[0]) <= MAX_FLIPS
    np.testing.assert_array_equal(scales, want[1])
    np.testing.assert_array_equal(offsets, want[2])
    ours = gptq.layer_error(w, affine.dequantize(codes, scales, offsets), h)
    theirs = gptq.layer_error(w, affine.dequantize(*want), h)
    assert ours == pytest.approx(theirs, rel=1e-12)

    # and better than round-to-nearest on the same weights, with either of affine's fits
    for fit in affine.FITS:
        rtn = affine.dequantize(*affine.quantize(w, bits, group_size, fit))
        assert ours <= gptq.layer_error(w, rtn, h)


@pytest.mark.parametrize("block_size", [1, 7, 16, 64, 1000])
@pytest.mark.parametrize("act_order", [False, True])
def test_block_size_does_not_change_the_result(block_size, act_order):
    """Lazy batches only reorder float64 sums: any block size, groups straddling blocks too."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal((8, 96)).astype(np.float32)
    h = gptq.hessian(calibration(rng, 300, 96))
    want = gptq.gptq(w, h, 3, 32, act_order=act_order, block_size=96)
    got = gptq.gptq(w, h, 3, 32, act_order=act_order, block_size=block_size)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_diagonal_h_without_act_order_is_round_to_nearest():
    """With uncorrelated inputs there is nothing to compensate: each group is affine's own fit."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 64)).astype(np.float32)
    h = np.diag(rng.uniform(0.5, 2.0, 64))
    for fit in affine.FITS:
        got = gptq.gptq(w, h, 3, 16, fit=fit)
        for a, b in zip(got, affine.quantize(w, 3, 16, fit)):
            np.testing.assert_array_equal(a, b)


def test_hessian_accumulates_batches():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 50, 24))                   # (batch, tokens, K)
    acc = gptq.Hessian(24)
    for part in (x[0, :20], x[0, 20:], x[1]):
        acc.add(part)
    flat = x.reshape(-1, 24)
    np.testing.assert_allclose(acc.matrix(), 2 * flat.T @ flat / 100, rtol=1e-12)
    np.testing.assert_allclose(gptq.hessian(x), acc.matrix(), rtol=1e-12)
    assert acc.matrix().dtype == np.float64 and acc.total.shape == (24, 24)


def test_rank_deficient_h_is_finite_without_warning():
    """Fewer samples than K and a dead input column: the default damping suffices."""
    rng = np.random.default_rng(5)
    x = calibration(rng, 40, 128)
    x[:, 17] = 0.0
    h = gptq.hessian(x)
    w = rng.standard_normal((16, 128)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for act_order in (False, True):
            codes, scales, offsets = gptq.gptq(w, h, 3, 32, act_order=act_order)
            q = affine.dequantize(codes, scales, offsets)
            assert np.all(np.isfinite(q)) and np.isfinite(gptq.layer_error(w, q, h))
            want = naive_gptq(w, h, 3, 32, act_order)
            assert np.count_nonzero(codes != want[0]) <= MAX_FLIPS
    all_dead = gptq.gptq(w, np.zeros((128, 128)), 3, 32)   # no input at all: weights to 0
    assert np.all(np.isfinite(affine.dequantize(*all_dead)))


def test_damping_grows_with_a_warning_when_cholesky_fails():
    """H with a negative eigenvalue -0.05 mean(diag H): 0.01 fails, 0.1 succeeds and warns."""
    rng = np.random.default_rng(6)
    basis, _ = np.linalg.qr(rng.standard_normal((32, 32)))
    eig = np.concatenate([[-0.05], np.full(31, 32.05 / 31)])      # mean 1
    h = basis @ np.diag(eig) @ basis.T
    h = (h + h.T) / 2
    w = rng.standard_normal((4, 32)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"damping raised to 0\.1 \* mean\(diag H\)"):
        codes, scales, offsets = gptq.gptq(w, h, 4, 32)
    assert np.all(np.isfinite(affine.dequantize(codes, scales, offsets)))
    with pytest.raises(ValueError, match="^H is not positive semi-definite"):
        gptq.gptq(w, np.eye(32) - 3 * np.outer(basis[0], basis[0]), 4, 32)


@pytest.mark.parametrize("change,match", [
    (dict(h=np.eye(32)), r"^H must be \(K, K\) = \(64, 64\)"),
    (dict(h=np.triu(np.ones((64, 64)))), "^H must be symmetric"),
    (dict(h=np.full((64, 64), np.nan)), "^H must be finite"),
    (dict(h=-np.eye(64)), "^H must have a non-negative diagonal"),
    (dict(w=np.ones(64, np.float32)), "^w must be a 2-D float array"),
    (dict(bits=0), "^bits must be one of"),
    (dict(bits=9), "^bits must be one of"),
    (dict(group_size=48), "^group_size must be a positive integer dividing K = 64"),
    (dict(group_size=0), "^group_size must be"),
    (dict(block_size=0), "^block_size must be"),
    (dict(damp=0.0), "^damp must be a positive number"),
    (dict(fit="mse"), "^fit must be one of"),
])
def test_bad_arguments_name_the_argument(change, match):
    args = dict(w=np.ones((4, 64), np.float32), h=np.eye(64), bits=3, group_size=32)
    args.update(change)
    extra = {key: args.pop(key) for key in ("block_size", "damp", "fit") if key in args}
    with pytest.raises(ValueError, match=match) as info:
        gptq.gptq(args["w"], args["h"], args["bits"], args["group_size"], **extra)
    assert "\n" not in str(info.value)


def test_hessian_bad_inputs():
    with pytest.raises(ValueError, match=r"^inputs must have shape \(\.\.\., 8\)"):
        gptq.Hessian(8).add(np.ones((3, 7)))
    with pytest.raises(ValueError, match="^inputs: no calibration samples"):
        gptq.Hessian(8).matrix()
    with pytest.raises(ValueError, match="^inputs must be finite"):
        gptq.hessian(np.array([[1.0, np.inf]]))


def naive_refit(w, h, codes, group_size):
    """Each row's scales and offsets of least (w - q) H (w - q)^T for fixed codes, by a dense
    least-squares solve in float64: with H = L L^T, minimise ||L^T (w - A p)|| for the row's
    K x 2G design matrix A (column g: the codes on group g; column G + g: ones on group g)."""
    m, k = codes.shape
    n = k // group_size
    lower = np.linalg.cholesky(h)
    solutions = np.zeros((m, 2 * n))
    for r in range(m):
        a = np.zeros((k, 2 * n))
        for g in range(n):
            cols = slice(g * group_size, (g + 1) * group_size)
            a[cols, g] = codes[r, cols]
            a[cols, n + g] = 1.0
        solutions[r] = np.linalg.lstsq(lower.T @ a, lower.T @ w[r].astype(np.float64),
                                       rcond=None)[0]
    return solutions[:, :n], solutions[:, n:]


@pytest.mark.parametrize("bits,group,k,m", [(3, 16, 64, 8), (2, 32, 128, 12), (4, 8, 48, 6)])
def test_refit_groups_solves_the_least_squares_of_the_layer_error(bits, group, k, m):
    rng = np.random.default_rng(bits * k)
    w = rng.standard_normal((m, k)).astype(np.float32)
    h = gptq.hessian(calibration(rng, 4 * k, k))
    codes = gptq.gptq(w, h, bits, group, act_order=True)[0]
    scales, offsets = gptq.refit_groups(w, h, codes, group)
    want_s, want_o = naive_refit(w, h, codes, group)
    # ours are float16 values of the same solution: within one float16 step of it
    for ours, want in ((scales, want_s), (offsets, want_o)):
        assert np.array_equal(ours.astype(np.float16).astype(np.float32), ours)
        step = np.abs(np.spacing(want.astype(np.float16))).astype(np.float64)
        assert np.all(np.abs(ours - want) <= step)
    # and no parameters for these codes do better (up to float16 rounding)
    best = gptq.layer_error(w, affine.dequantize(codes, want_s.astype(np.float32),
                                                 want_o.astype(np.float32)), h)
    assert gptq.layer_error(w, affine.dequantize(codes, scales, offsets), h) <= best * 1.01


@pytest.mark.parametrize("act_order", [False, True])
def test_refits_never_raise_any_rows_error_and_lower_the_layer_error(act_order):
    rng = np.random.default_rng(5)
    k, m = 128, 24
    w = rng.standard_normal((m, k)).astype(np.float32)
    h = gptq.hessian(calibration(rng, 4 * k, k))
    errors = [gptq.row_errors(w, affine.dequantize(*gptq.gptq(w, h, 3, 16, act_order=act_order,
                                                              refits=r)), h)
              for r in range(4)]
    for before, after in zip(errors, errors[1:]):
        assert np.all(after <= before)
    assert errors[3].sum() < 0.95 * errors[0].sum()
    assert np.isclose(errors[0].sum(), gptq.layer_error(
        w, affine.dequantize(*gptq.gptq(w, h, 3, 16, act_order=act_order)), h))


def test_refit_of_a_group_whose_codes_are_all_equal_stays_finite():
    """A constant group leaves scale and offset undetermined: the ridge keeps the solve finite
    and the offset restores the value."""
    w = np.full((2, 32), 0.25, np.float32)
    w[1, 16:] = np.linspace(-1, 1, 16)
    h = np.eye(32)
    codes, _, _ = gptq.gptq(w, h, 3, 16)
    scales, offsets = gptq.refit_groups(w, h, codes, 16)
    assert np.all(np.isfinite(scales)) and np.all(np.isfinite(offsets))
    assert np.allclose(affine.dequantize(codes, scales, offsets)[0], 0.25, atol=1e-3)


def test_refits_must_be_a_non_negative_integer():
    w = np.ones((2, 16), np.float32)
    with pytest.raises(ValueError, match="refits must be a non-negative integer"):
        gptq.gptq(w, np.eye(16), 3, 16, refits=-1)
    with pytest.raises(ValueError, match="refits must be a non-negative integer"):
        gptq.gptq(w, np.eye(16), 3, 16, refits=1.5)
