"""SIMD primitives for Numba kernels, split by architecture (as ggml's per-arch folders):

    generic  generic LLVM vector IR, safe on every CPU: register types, memory, arithmetic,
             the table build
    x86      AVX-512 and AVX2 instructions (vpermb, vpdpbusd, pshufb, ...): only for kernels
             tmac.kernels.dispatch chose for a CPU that has them

Import from the submodule, so a portable kernel never names an x86 instruction.
"""
