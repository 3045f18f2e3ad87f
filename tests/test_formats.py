"""Every format of the format table, at every width, through everything that iterates the table:
quantize, every op on every backend against its reference, explain, the benchmark's weights.
A new format is tested here without an edit of this file."""

import numpy as np
import pytest

import tmac
from tmac.bench import bench_case, weight_spec
from tmac.formats import FORMATS, QuantizedWeight
from tmac.registry import OPS
from tmac.validation import resolve_act_group_size

CASES = [(name, bits) for name, fmt in FORMATS.items() for bits in fmt.widths]
M, N, GROUP = 70, 3, 20


def k_of(name):
    """K for a format: 100 (not a multiple of the 16-column unit), or the least multiple of a
    block type's block above it."""
    multiple = FORMATS[name].k_multiple
    return -(-100 // multiple) * multiple


def group_of(name):
    return GROUP if FORMATS[name].k_multiple == 1 else None


def act_of(name):
    """An activation group nesting with the format's weight groups (16 divides 16, 32, 256)."""
    return GROUP if FORMATS[name].k_multiple == 1 else 16


def bitwise_equal(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(21)
    return {k: (rng.standard_normal((M, k)).astype(np.float32) * np.float32(0.05),
                rng.standard_normal((N, k)).astype(np.float32))
            for k in {k_of(name) for name in FORMATS}}


@pytest.fixture(scope="module")
def weights(data):
    return {(name, bits): tmac.quantize(data[k_of(name)][0], bits=bits, group_size=group_of(name),
                                        scheme=name)
            for name, bits in CASES}


@pytest.mark.parametrize("name, bits", CASES)
def test_quantize_gives_a_weight_of_the_format(weights, data, name, bits):
    qw, k = weights[name, bits], k_of(name)
    fmt = FORMATS[name]
    assert isinstance(qw, QuantizedWeight) and qw.scheme == name and qw.format is fmt
    assert qw.bits == bits and qw.shape == (M, k) and int(qw.codes.max()) < 1 << bits
    assert (qw.packed is not None) == fmt.has_lut_path
    w = qw.dequantize()
    assert w.dtype == np.float32 and w.shape == (M, k) and np.isfinite(w).all()
    # a fit: closer to the weights than the zero matrix
    assert np.linalg.norm(w - data[k][0]) < np.linalg.norm(data[k][0])
    assert 0 < qw.nbytes < 4 * M * k and name in repr(qw) and name in qw._repr_html_()


@pytest.mark.parametrize("name, bits", CASES)
def test_every_op_of_the_format_equals_its_reference_on_every_backend(weights, data, name, bits):
    qw, (_, x) = weights[name, bits], data[k_of(name)]
    for op_name in FORMATS[name].ops:
        op = OPS[op_name]
        if bits > op.max_bits:
            continue
        for backend in op.kernel_backends:
            if op.takes_tables:
                act = act_of(name)
                for lut in ("int8", "float32"):
                    want = op.reference(qw, x, act, lut)
                    assert bitwise_equal(op.implementation(backend)(qw, x, act, lut), want), \
                        (op_name, backend, lut)
            else:
                want = op.reference(qw, x)
                assert bitwise_equal(op.implementation(backend)(qw, x), want), (op_name, backend)


@pytest.mark.parametrize("name, bits", CASES)
def test_matmul_and_dequant_matmul_run_the_ops_the_format_names(weights, data, name, bits):
    qw, (_, x) = weights[name, bits], data[k_of(name)]
    fmt = FORMATS[name]
    act = resolve_act_group_size(None, qw.group_size, k_of(name))  # matmul's default
    want = OPS[fmt.matmul_op].reference(qw, x, *((act, "int8") if fmt.has_lut_path else ()))
    assert bitwise_equal(tmac.matmul(qw, x), want)
    assert bitwise_equal(tmac.matmul(qw, x, backend="reference"), want)
    assert bitwise_equal(tmac.dequant_matmul(qw, x, backend="reference"),
                         OPS[fmt.dequant_op].reference(qw, x))


@pytest.mark.parametrize("name, bits", CASES)
def test_explain_gives_the_value_matmul_gives(weights, data, name, bits):
    qw, (_, x) = weights[name, bits], data[k_of(name)]
    for lut in ("int8", "float32"):
        y = tmac.matmul(qw, x[0], lut=lut, backend="reference")
        for row in (0, 37, M - 1):
            e = tmac.explain(qw, x[0], row, lut=lut)
            assert np.float32(e.value).view(np.uint32) == y[row].view(np.uint32), (row, lut)
            assert str(row) in e.summary()


@pytest.mark.parametrize("name, bits", CASES)
def test_the_benchmark_takes_every_format(name, bits):
    fmt, b = weight_spec(f"{name}{bits}" if len(FORMATS[name].widths) > 1 else name)
    assert (fmt.name, b) == (name, bits)
    k = max(64, fmt.k_multiple)
    qw = fmt.random(64, k, b, 32, np.random.default_rng(0))
    assert qw.scheme == name and qw.bits == b
    row = bench_case(64, k, name if len(fmt.widths) == 1 else f"{name}{bits}", 1, "hot", 1,
                     group_size=32, baselines=False, repeat=2)
    assert row["lut_us"] > 0


def test_unknown_scheme_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="scheme must be one of 'asym'"):
        tmac.quantize(np.ones((4, 8), np.float32), scheme="q4")


@pytest.mark.parametrize("kind, bits", [("Q4_1", 4), ("Q5_1", 5)])
def test_affine_requantizes_llama_cpp_blocks_bit_for_bit(kind, bits):
    """gguf's own quantizer makes Q4_1/Q5_1 blocks; dequantized by gguf and requantized as affine
    groups of 32, the weights come back bit for bit (dequantize is gguf's d * q + m)."""
    gguf = pytest.importorskip("gguf", reason="the 'model' extra (gguf) is not installed")
    rng = np.random.default_rng(5)
    w = (rng.standard_normal((64, 576)) * rng.random((64, 1)) * 0.1).astype(np.float32)
    qtype = getattr(gguf.GGMLQuantizationType, kind)
    source = gguf.quants.dequantize(gguf.quants.quantize(w, qtype), qtype).astype(np.float32)
    qw = tmac.quantize(source, bits=bits, group_size=32, scheme="affine")
    assert np.array_equal(qw.dequantize().view(np.uint32), source.view(np.uint32))
    # the LUT product is another rounding of the same sum: close, not equal
    x = rng.standard_normal((2, 576)).astype(np.float32)
    dense = x.astype(np.float64) @ source.T.astype(np.float64)
    assert np.abs(tmac.matmul(qw, x, lut="float32") - dense).max() < 1e-4 * np.abs(dense).max()
