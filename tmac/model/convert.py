"""``tmac convert``: a GGUF model rewritten with its linear weights in another llama.cpp type.

    convert("smollm2", "Q4_0", "smollm2-q4_0.gguf")

Every weight matrix is dequantized (tmac.reference.ggml, bit for bit gguf's) and quantized by
the ``gguf`` package's own quantizers, which write llama.cpp's bytes; metadata, tokenizer and
1-D tensors (norms) are copied as they are. The output head (``output.weight``, or the tied
``token_embd.weight``) keeps a wide type unless asked: its own type if it is at least 8 bits,
else Q8_0 (llama.cpp keeps its head wide in its low-bit mixes too). The same file then runs in
llama.cpp and in tmac (``--format native``), so the two engines compare on the same bytes.

Types ``gguf`` cannot quantize (the K-quants, the IQ family) and dimensions a type's block does
not divide (TQ1_0/TQ2_0 need K a multiple of 256; SmolLM2's K is 576 or 1536) are refused, with
the tensor named, before anything is written: never a silent fallback to another type.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# what gguf-py 0.19 quantizes (reproducing llama.cpp's bytes), and the float types
WRITABLE = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "TQ1_0", "TQ2_0")
WIDE = ("F32", "F16", "BF16", "Q8_0")
HEAD_NAMES = ("output.weight", "token_embd.weight")


def _require(kind, what):
    if kind not in WRITABLE:
        raise ValueError(f"{what} {kind!r} cannot be written: tmac convert writes "
                         f"{', '.join(WRITABLE)} (the gguf package's quantizers; it has none for "
                         "the K-quants or the IQ types)")
    return kind


def plan(reader, to, head=None):
    """{tensor name: target type} for every tensor of ``reader`` (a gguf.GGUFReader); ValueError
    naming the first tensor a type cannot hold."""
    from tmac.reference import ggml

    to = _require(str(to).upper(), "--to")
    tied = not any(t.name == "output.weight" for t in reader.tensors)
    targets = {}
    for t in reader.tensors:
        kind, name = t.tensor_type.name, t.name
        is_head = name == "output.weight" or (tied and name == "token_embd.weight")
        if len(t.shape) < 2:
            targets[name] = kind                               # norms, biases: as they are
            continue
        if kind not in ggml.BLOCK_TYPES:
            raise ValueError(f"tensor {name} is {kind}, which tmac cannot read "
                             f"(it reads {', '.join(ggml.BLOCK_TYPES)})")
        if name == "token_embd.weight" and not tied:
            targets[name] = kind                               # only looked up: as it is
            continue
        if is_head:
            target = _require(str(head).upper(), "--head") if head else (kind if kind in WIDE
                                                                          else "Q8_0")
        else:
            target = to
        block = ggml.get(target).block_size
        k = int(t.shape[0])                                    # ggml's first dimension is K
        if k % block:
            raise ValueError(f"{target} needs K a multiple of {block}; tensor {name} has "
                             f"K = {k} (tmac convert never falls back to another type)")
        targets[name] = target
    return targets


def _copy_metadata(reader, writer):
    import gguf

    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == gguf.Keys.General.ARCHITECTURE:
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)


def _write(reader, targets, writer, progress):
    import gguf

    from tmac.model import loader

    _copy_metadata(reader, writer)
    for i, t in enumerate(reader.tensors):
        kind, target = t.tensor_type.name, targets[t.name]
        if target == kind:                                     # the bytes as they are
            data = np.asarray(t.data)
            writer.add_tensor(t.name, data, raw_shape=None if kind in ("F32", "F16")
                              else data.shape, raw_dtype=t.tensor_type)
        elif target in ("F32", "F16"):
            w = loader.dequantize_tensor(t)
            writer.add_tensor(t.name, w.astype(np.float32 if target == "F32" else np.float16))
        else:
            w = loader.dequantize_tensor(t)
            qtype = getattr(gguf.GGMLQuantizationType, target)
            raw = gguf.quants.quantize(w.reshape(-1, w.shape[-1]), qtype)
            writer.add_tensor(t.name, raw, raw_dtype=qtype)
        if progress:
            progress(i + 1, len(reader.tensors))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def convert(model, to, out, head=None, force=False, progress=None):
    """Write ``out`` (a GGUF file) from ``model`` (a GGUF path or fetched name) with every linear
    weight in type ``to`` and the head as described above. ``progress(done, total)`` per tensor.
    Returns {tensor name: type written}."""
    import gguf

    from tmac.model import fetch, loader

    src = fetch.resolve(model)
    out = Path(out)
    if out.exists() and not force:
        raise ValueError(f"{out} exists; pass --force to overwrite it")
    loader.check_header(src)
    reader = gguf.GGUFReader(str(src))
    targets = plan(reader, to, head)                            # refuse before writing
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    tmp = out.with_name(out.name + ".part")
    try:
        _write(reader, targets, gguf.GGUFWriter(str(tmp), arch), progress)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return targets
