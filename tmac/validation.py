"""Argument checks shared by the public API. Each error names the argument and what was expected."""

import numbers
import os

import numpy as np


def available_memory():
    """Bytes of memory this process can still expect to get (Linux MemAvailable, else physical)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(name, nbytes, what="working memory"):
    """Fail early, before allocating, when ``nbytes`` cannot fit in the memory left."""
    available = available_memory()
    if nbytes > available:
        raise ValueError(f"{name} is too large: it needs {nbytes / 2**30:.1f} GiB of {what}, "
                         f"and {available / 2**30:.1f} GiB are available")


def is_array_like(value):
    """Whether ``value`` is something ``float_array`` may read: a numpy array or scalar, a list or
    tuple, or an object exposing ``__array__``, ``__array_interface__`` or ``__dlpack__``.
    (Operators return NotImplemented for anything else, so Python raises its usual TypeError.)"""
    if isinstance(value, (np.ndarray, np.generic, list, tuple)):
        return True
    kind = type(value)
    return any(hasattr(kind, attr) for attr in ("__array__", "__array_interface__",
                                                  "__array_struct__", "__dlpack__"))


def as_array(name, value):
    """``value`` as a numpy array, without a copy where the source allows: numpy arrays as they
    are, ``__array__`` / array-interface objects through ``np.asarray``, objects exposing only
    ``__dlpack__`` (a CPU tensor of another library) through ``np.from_dlpack``."""
    if isinstance(value, np.ndarray):
        return value
    kind = type(value)
    if hasattr(kind, "__dlpack__") and not any(
            hasattr(kind, attr) for attr in ("__array__", "__array_interface__", "__array_struct__")):
        try:
            return np.from_dlpack(value)
        except (TypeError, ValueError, BufferError, RuntimeError) as error:
            raise TypeError(f"{name} could not be read through __dlpack__ as a CPU numpy array: "
                            f"{error}") from None
    return np.asarray(value)


def float_array(name, value, ndims):
    """``value`` as a C-contiguous float32 copy-free-when-possible array with ndim in ``ndims``
    (None: any ndim >= 1).

    Accepts float16/32/64 arrays and array-likes of them (``__array__``, ``__dlpack__``, lists):
    a C-contiguous float32 source is used in place, anything else is converted once. Refuses
    bool, integer, complex and object data, empty arrays, and NaN/Inf. The caller's array is
    never modified.
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a float array, got {type(value).__name__}")
    array = as_array(name, value)
    if array.dtype.kind != "f":
        raise TypeError(f"{name} must have a floating-point dtype (float16/32/64), got {array.dtype}")
    if ndims is None and array.ndim == 0:
        raise ValueError(f"{name} must be at least 1-D, got a 0-D array (shape ())")
    if ndims is not None and array.ndim not in ndims:
        expected = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {expected}, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    check_memory(name, array.size * 4, "float32 storage")
    with np.errstate(over="ignore"):
        converted = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(converted).all():
        where = "after conversion to float32 " if np.isfinite(array).all() else ""
        raise ValueError(f"{name} must be finite {where}(found NaN or Inf)")
    return converted


FLOAT32_MAX = float(np.finfo(np.float32).max)


def no_overflow(name, array, terms, where):
    """Refuse values so large that summing ``terms`` of them overflows float32 in ``where``
    (an infinity would become NaN outputs or parameters without a word)."""
    largest = float(np.abs(array).max())
    if largest * terms >= FLOAT32_MAX:
        raise ValueError(f"{name} holds values up to {largest:.3g}: {terms} of them overflow "
                         f"float32 in {where}; scale {name} down (|{name}| * {terms} must stay "
                         f"below {FLOAT32_MAX:.3g})")


def integer(name, value):
    """A plain Python int (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    return int(value)


def choice(name, value, allowed):
    """``value`` if it is one of ``allowed`` (strings compared exactly)."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def group_size_choices(k):
    """Valid weight group sizes for K columns: multiples of 4 that divide K, then the whole row."""
    return [g for g in range(4, k, 4) if k % g == 0] + [k]


def resolve_group_size(group_size, k):
    """None or "row" -> K; otherwise a multiple of 4 dividing K (or K itself)."""
    if group_size is None or group_size == "row":
        return k
    group_size = integer("group_size", group_size)
    if group_size == k or (group_size > 0 and group_size % 4 == 0 and k % group_size == 0):
        return group_size
    raise ValueError(f"group_size {group_size} does not fit K={k}: it must be a multiple of 4 that "
                     f"divides K; valid choices: {group_size_choices(k)[:-1]} or None (whole row)")


def resolve_act_group_size(act_group_size, group_size, k):
    """Activation group for table quantization, as a positive multiple of 4.

    None -> the weight group size (one table scale per weight group); "row" -> padded K.
    It must nest with the weight group: the larger a multiple of the smaller, or the whole row.
    """
    k_padded = -(-k // 4) * 4
    weight = k_padded if group_size == k else group_size
    if act_group_size is None:
        return weight
    if act_group_size == "row":
        return k_padded
    act = integer("act_group_size", act_group_size)
    if act <= 0 or act % 4:
        raise ValueError(f"act_group_size must be a positive multiple of 4 or 'row', got {act}")
    act = min(act, k_padded)
    small, large = min(act, weight), max(act, weight)
    if large % small and large != k_padded:
        raise ValueError(f"act_group_size {act} does not nest with group_size {group_size}: one must "
                         "be a multiple of the other (or use 'row')")
    return act


def parse_shape(shape: str) -> tuple:
    """"MxK" -> (M, K), both positive ints; ValueError naming the shape otherwise."""
    try:
        m, k = (int(v) for v in shape.lower().split("x"))
    except ValueError:
        raise ValueError(f"shape must be MxK with integers, e.g. 4096x4096; got {shape!r}") from None
    if m < 1 or k < 1:
        raise ValueError(f"shape must have positive sizes, got {shape!r}")
    return m, k
