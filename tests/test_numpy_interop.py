"""numpy-native use (issue 18): ``qw @ x``, ``x @ qw.T``, batched activations, ``__array__`` and
``__dlpack__`` inputs. Expected values come from the reference backend or float64 numpy.

One small matrix and one scheme (asym, 2 bits, group 32, as tests/test_api.py) so the kernels
compile once."""

import numpy as np
import pytest

import tmac
from tmac.formats.weight import TransposedWeight

M, K = 8, 64


@pytest.fixture(scope="module")
def qw():
    w = np.random.default_rng(0).standard_normal((M, K)).astype(np.float32)
    return tmac.quantize(w, bits=2, group_size=32)


def rand(*shape, seed=1, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def reference(qw, x, **options):
    return tmac.matmul(qw, x, backend="reference", **options)


def bits(a):
    return np.asarray(a, np.float32).view(np.uint32)


def dense(qw):
    return qw.dequantize().astype(np.float64)


def int8_budget(qw, x2d):
    """The int8 tables' error bound per element (as tests/test_api.py's property test)."""
    step = np.abs(x2d).sum(axis=1, keepdims=True) / 127
    return 0.5 * step * (np.abs(qw.dequantize()).sum(axis=1)[None, :] + 1) * 2 + 1e-4


class ArrayOnly:
    """Exposes only ``__array__``, handing out the numpy array it wraps."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


class DLPackOnly:
    """Exposes only ``__dlpack__`` (like a CPU tensor of another library), delegating to numpy."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, **kwargs):
        return self.a.__dlpack__(**kwargs)


@pytest.fixture
def seen(monkeypatch):
    """The activations each call hands to the implementation (after validation)."""
    calls = []
    original = tmac.api._implementation

    def spying(op_name, backend):
        implementation = original(op_name, backend)

        def run(qw, x, *rest):
            calls.append(x)
            return implementation(qw, x, *rest)
        return run

    monkeypatch.setattr(tmac.api, "_implementation", spying)
    return calls


# ---- qw @ x -------------------------------------------------------------------------------

def test_weight_times_vector_is_matmul(qw):
    x = rand(K)
    y = qw @ x
    assert y.shape == (M,) and y.dtype == np.float32
    np.testing.assert_array_equal(bits(y), bits(reference(qw, x)))


def test_weight_times_matrix_is_matmul_of_the_transpose(qw):
    x = rand(K, 3)
    y = qw @ x
    assert y.shape == (M, 3) and y.dtype == np.float32 and y.flags.c_contiguous
    np.testing.assert_array_equal(bits(y), bits(reference(qw, x.T).T))
    for n in range(3):                       # each column is one activation vector
        np.testing.assert_array_equal(bits(y[:, n]), bits(reference(qw, x[:, n])))
    exact = dense(qw) @ x.astype(np.float64)
    assert (np.abs(y - exact) <= int8_budget(qw, x.T).T).all()


def test_weight_times_stack_of_matrices(qw):
    x = rand(2, K, 3)
    y = qw @ x
    assert y.shape == (2, M, 3)
    for b in range(2):
        np.testing.assert_array_equal(bits(y[b]), bits(reference(qw, x[b].T).T))


# ---- x @ qw.T -----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(K,), (3, K), (2, 3, K), (2, 1, 2, K)])
def test_times_transpose_is_matmul_row_by_row(qw, shape):
    x = rand(*shape)
    y = x @ qw.T
    assert y.shape == shape[:-1] + (M,) and y.dtype == np.float32
    rows, y_rows = x.reshape(-1, K), y.reshape(-1, M)
    for n in range(rows.shape[0]):           # a batched row equals that row alone, bit for bit
        np.testing.assert_array_equal(bits(y_rows[n]), bits(reference(qw, rows[n])))
    exact = rows.astype(np.float64) @ dense(qw).T
    assert (np.abs(y_rows - exact) <= int8_budget(qw, rows)).all()


def test_transpose_of_a_list(qw):
    x = rand(K)
    np.testing.assert_array_equal(bits(x.tolist() @ qw.T), bits(reference(qw, x)))


def test_transpose_is_a_lazy_view(qw):
    t = qw.T
    assert isinstance(t, TransposedWeight) and t.weight is qw and t.T is qw
    assert t.shape == (K, M)
    with pytest.raises(AttributeError):
        t.weight = None


@pytest.mark.parametrize("use", [
    lambda t: np.asarray(t), lambda t: t[0], lambda t: t[:, 1], lambda t: list(t),
    lambda t: t + 1, lambda t: 2 * t, lambda t: np.ones((K, M), np.float32) - t, lambda t: -t,
    lambda t: t @ np.ones((M,), np.float32), lambda t: np.add(np.ones((K, M)), t)],
    ids=["asarray", "index", "slice", "iterate", "add", "rmul", "array-minus", "neg", "T@x", "ufunc"])
def test_transpose_refuses_everything_else(qw, use):
    with pytest.raises(TypeError, match="qw.T|ufunc"):
        use(qw.T)


def test_transpose_error_says_what_is_supported(qw):
    with pytest.raises(TypeError, match=r"supports only x @ qw.T .* and .T"):
        qw.T[0]


def test_times_untransposed_weight_points_to_the_transpose(qw):
    with pytest.raises(TypeError, match=r"x @ qw.T"):
        np.ones(M, np.float32) @ qw


# ---- batches in matmul and dequant_matmul -------------------------------------------------

def test_matmul_batches_with_kernels_and_float_tables(qw):
    x = rand(2, 3, K, seed=2)
    y = tmac.matmul(qw, x)                   # kernels, flattened then reshaped
    np.testing.assert_array_equal(bits(y), bits(reference(qw, x.reshape(6, K)).reshape(2, 3, M)))
    y_float = tmac.matmul(qw, x, lut="float32", backend="reference")
    exact = x.astype(np.float64) @ dense(qw).T
    np.testing.assert_allclose(y_float, exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_dequant_matmul_batches_row_by_row(qw, backend):
    x = rand(2, 3, K, seed=3)
    y = tmac.dequant_matmul(qw, x, backend=backend)
    assert y.shape == (2, 3, M)
    for b in range(2):
        for s in range(3):
            alone = tmac.dequant_matmul(qw, x[b, s], backend="reference")
            np.testing.assert_array_equal(bits(y[b, s]), bits(alone))
    exact = x.astype(np.float64) @ dense(qw).T
    np.testing.assert_allclose(y, exact, rtol=1e-5, atol=1e-5 * np.abs(exact).max())


def test_batched_input_is_not_modified(qw):
    x = rand(2, 3, K, dtype=np.float64)
    before = x.copy()
    x @ qw.T
    qw @ np.swapaxes(x, -1, -2)
    np.testing.assert_array_equal(x, before)


# ---- __array__ and __dlpack__ inputs ------------------------------------------------------

@pytest.mark.parametrize("wrap", [ArrayOnly, DLPackOnly], ids=["__array__", "__dlpack__"])
def test_array_protocols_are_read_without_a_copy(qw, seen, wrap):
    x = rand(2, 3, K, seed=4)
    y = tmac.matmul(qw, wrap(x), backend="reference")
    assert np.shares_memory(seen[-1], x)     # the implementation read x's own memory
    np.testing.assert_array_equal(bits(y), bits(reference(qw, x)))
    np.testing.assert_array_equal(bits(wrap(x) @ qw.T), bits(y))
    np.testing.assert_array_equal(bits(qw @ wrap(x[0].T.copy())), bits(y[0].T))
    np.testing.assert_array_equal(bits(tmac.dequant_matmul(qw, wrap(x), backend="reference")),
                                  bits(tmac.dequant_matmul(qw, x, backend="reference")))


@pytest.mark.parametrize("wrap", [ArrayOnly, DLPackOnly], ids=["__array__", "__dlpack__"])
def test_array_protocols_with_other_layouts_are_converted(qw, seen, wrap):
    x = rand(3, 2 * K, seed=5, dtype=np.float64)[:, ::2]      # float64, strided
    y = tmac.matmul(qw, wrap(x), backend="reference")
    assert not np.shares_memory(seen[-1], x)
    np.testing.assert_array_equal(bits(y), bits(reference(qw, x.astype(np.float32))))


def test_plain_float32_array_is_not_copied(qw, seen):
    x = rand(2, 3, K, seed=6)
    x @ qw.T
    assert np.shares_memory(seen[-1], x)


def test_dlpack_that_fails_is_a_type_error_naming_x(qw):
    class Broken:
        def __dlpack__(self, **kwargs):
            raise BufferError("device memory")
    with pytest.raises(TypeError, match=r"^x could not be read through __dlpack__"):
        tmac.matmul(qw, Broken())


# ---- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("call, shape, message", [
    (lambda qw, x: tmac.matmul(qw, x), (100,), "x has K=100 elements"),
    (lambda qw, x: tmac.matmul(qw, x), (2, 3, 63), "x has K=63 columns"),
    (lambda qw, x: x @ qw.T, (4, 65), "x has K=65 columns"),
    (lambda qw, x: tmac.dequant_matmul(qw, x), (2, 63), "x has K=63 columns"),
    (lambda qw, x: qw @ x, (63,), "x has K=63 elements"),
    (lambda qw, x: qw @ x, (3, K), "x has K=3 rows"),
    (lambda qw, x: qw @ x, (2, 63, 3), "x has K=63 rows"),
])
def test_wrong_shapes_name_x_and_the_expected_k(qw, call, shape, message):
    with pytest.raises(ValueError, match=message) as error:
        call(qw, np.ones(shape, np.float32))
    text = str(error.value)
    assert "expects K=64" in text and "\n" not in text


def test_scalar_and_empty_activations_are_refused(qw):
    with pytest.raises(ValueError, match="x must be at least 1-D"):
        tmac.matmul(qw, np.float32(1))
    with pytest.raises(ValueError, match="x must not be empty"):
        np.ones((2, 0, K), np.float32) @ qw.T


@pytest.mark.parametrize("other", [object(), "text", 3, None, {"a": 1}])
def test_matmul_operator_with_non_arrays_returns_not_implemented(qw, other):
    assert qw.__matmul__(other) is NotImplemented
    assert qw.T.__rmatmul__(other) is NotImplemented
    with pytest.raises(TypeError, match="unsupported operand"):
        qw @ other
    with pytest.raises(TypeError, match="unsupported operand"):
        other @ qw.T


def test_weights_do_not_multiply_each_other(qw):
    with pytest.raises(TypeError, match="unsupported operand"):
        qw @ qw.T
    with pytest.raises(TypeError, match="unsupported operand"):
        qw @ qw
