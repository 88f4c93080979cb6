"""ggml's AVX-512 arithmetic, for builds of llama.cpp whose compiler saw ``__AVX512F__``.

On such a build ggml's vector macros widen (ggml-cpu/simd-mappings.h): GGML_F32_STEP 64 and
GGML_F32_EPR 16, so ggml_vec_dot_f16 keeps four accumulators of sixteen lanes and reduces them
with GGML_F32x16_REDUCE, whose last step is GCC's ``_mm512_reduce_add_ps`` (the 256-bit halves
added, then the 128-bit halves, then lanes (0 + 2, 1 + 3), then the two). Softmax and SiLU take
the AVX-512 ``ggml_v_expf`` (ggml-cpu/vec.h), which differs from the AVX2 one in how it scales by
2^n: ``_mm512_scalef_ps(j, n)`` on a polynomial that already includes the 1, where AVX2 builds
k = 2^n from the bits and returns fma(j, k, k).

The IR intrinsics below use 16-lane vectors; LLVM lowers them to whatever the CPU has, and the
values are the same, so every level can be computed (and tested) on any x86 machine. Each sits
beside a scalar twin (``*_ref``) that spells out the lane order.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .simd import (EXP_LN2_HI, EXP_LN2_LO, EXP_LOG2E, EXP_P0, EXP_P1, EXP_P2, EXP_P3, EXP_P4, EXP_R, _f32_ptr, _ptr,
                   _splat, fma32, libm_expf)

_F32 = ir.FloatType()
_F64 = ir.DoubleType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_F32x16 = ir.VectorType(_F32, 16)
_F64x16 = ir.VectorType(_F64, 16)
_I64x16 = ir.VectorType(_I64, 16)
_F16x16 = ir.VectorType(ir.HalfType(), 16)

LANES = 16  # GGML_F32_EPR
STEP = 64  # GGML_F32_STEP = GGML_F16_DOT_STEP: four accumulators of sixteen lanes


# -- the scalar twins ----------------------------------------------------------------------------

@njit(inline="always", cache=True)
def reduce16_ref(a, o):
    """_mm512_reduce_add_ps (GCC's avx512fintrin.h) over a[o:o+16]."""
    t0 = a[o + 8] + a[o + 0]
    t1 = a[o + 9] + a[o + 1]
    t2 = a[o + 10] + a[o + 2]
    t3 = a[o + 11] + a[o + 3]
    t4 = a[o + 12] + a[o + 4]
    t5 = a[o + 13] + a[o + 5]
    t6 = a[o + 14] + a[o + 6]
    t7 = a[o + 15] + a[o + 7]
    u0, u1, u2, u3 = t4 + t0, t5 + t1, t6 + t2, t7 + t3
    return (u0 + u2) + (u1 + u3)


@njit(inline="always", cache=True)
def v_expf512_ref(x):
    """One lane of ggml_v_expf (AVX-512F + DQ)."""
    z = fma32(x, EXP_LOG2E, EXP_R)
    n = z - EXP_R
    b = fma32(-n, EXP_LN2_LO, fma32(-n, EXP_LN2_HI, x))
    if abs(n) > np.float32(192.0):
        return np.float32(0.0) if n <= 0 else np.float32(np.inf)
    u = b * b
    j = fma32(fma32(fma32(EXP_P0, b, EXP_P1), u, fma32(EXP_P2, b, EXP_P3)), u, fma32(EXP_P4, b, np.float32(1.0)))
    return np.float32(np.float64(j) * 2.0 ** np.float64(n))  # _mm512_scalef_ps: one rounding


@njit(cache=True)
def dot_f16_ref(x, y, n):
    """ggml_vec_dot_f16 on an AVX-512 build: x and y float32 holding fp16 values, 1-D."""
    acc = np.zeros(STEP, np.float32)
    n64 = n & ~(STEP - 1)
    for i in range(0, n64, STEP):
        for j in range(STEP):
            acc[j] = fma32(x[i + j], y[i + j], acc[j])
    for ln in range(LANES):  # sum[0] += sum[2]; sum[1] += sum[3]; sum[0] += sum[1]
        acc[ln] = (acc[ln] + acc[32 + ln]) + (acc[16 + ln] + acc[48 + ln])
    s = np.float64(reduce16_ref(acc, 0))
    for i in range(n64, n):
        s += np.float64(np.float32(x[i] * y[i]))
    return np.float32(s)


@njit(cache=True)
def soft_max_ref(x, mx, out):
    """ggml_vec_soft_max_f32 (AVX-512): out = v_expf(x - mx) sixteen at a time, each group's
    _mm512_reduce_add_ps added in double; scalar expf for the leftovers. Returns the sum."""
    n = x.shape[0]
    total = 0.0
    i = 0
    while i + 15 < n:
        for j in range(16):
            out[i + j] = v_expf512_ref(np.float32(x[i + j] - mx))
        total += np.float64(reduce16_ref(out, i))
        i += 16
    while i < n:
        v = libm_expf(np.float32(x[i] - mx))
        out[i] = v
        total += np.float64(v)
        i += 1
    return total


@njit(cache=True)
def swiglu_ref(g, u, out):
    """ggml_vec_swiglu_f32 (AVX-512) over 1-D rows: ggml_v_silu sixteen at a time, the scalar
    ggml_silu_f32 (libm expf) for the leftovers."""
    n = g.shape[0]
    n16 = n & ~15
    for i in range(n16):
        x = g[i]
        out[i] = (x / (np.float32(1.0) + v_expf512_ref(np.float32(0.0) - x))) * u[i]
    for i in range(n16, n):
        x = g[i]
        out[i] = (x / (np.float32(1.0) + libm_expf(-x))) * u[i]


# -- the IR kernels ------------------------------------------------------------------------------

def _c16(v):
    return ir.Constant(_F32x16, [float(v)] * 16)


def _reduce16_ir(builder, v):
    """_mm512_reduce_add_ps, in GCC's order."""
    e = [builder.extract_element(v, ir.Constant(_I32, i)) for i in range(16)]
    t = [builder.fadd(e[i + 8], e[i]) for i in range(8)]
    u = [builder.fadd(t[i + 4], t[i]) for i in range(4)]
    return builder.fadd(builder.fadd(u[0], u[2]), builder.fadd(u[1], u[3]))


def _fma16(builder):
    fn = builder.module.declare_intrinsic("llvm.fma.v16f32", fnty=ir.FunctionType(_F32x16, [_F32x16] * 3))
    return lambda a, b, c: builder.call(fn, [a, b, c])


def _v_expf512_ir(builder, x):
    """ggml_v_expf (AVX-512) on sixteen lanes; _mm512_scalef_ps(j, n) as j * 2^n in double,
    rounded once to float (n is a whole number of at most 192 in magnitude on that path)."""
    fma = _fma16(builder)
    z = fma(x, _c16(EXP_LOG2E), _c16(EXP_R))
    n = builder.fsub(z, _c16(EXP_R))
    neg_n = builder.fneg(n)
    b = fma(neg_n, _c16(EXP_LN2_LO), fma(neg_n, _c16(EXP_LN2_HI), x))
    u = builder.fmul(b, b)
    j = fma(fma(fma(_c16(EXP_P0), b, _c16(EXP_P1)), u, fma(_c16(EXP_P2), b, _c16(EXP_P3))), u,
            fma(_c16(EXP_P4), b, _c16(1.0)))
    an = builder.call(builder.module.declare_intrinsic("llvm.fabs.v16f32", fnty=ir.FunctionType(_F32x16, [_F32x16])), [n])
    big = builder.fcmp_ordered(">", an, _c16(192.0))
    n_safe = builder.select(builder.fcmp_ordered("<=", an, _c16(192.0)), n, _c16(0.0))  # NaN stays in j
    ni = builder.fptosi(n_safe, _I64x16)
    pow2 = builder.bitcast(builder.shl(builder.add(ni, ir.Constant(_I64x16, [1023] * 16)),
                                       ir.Constant(_I64x16, [52] * 16)), _F64x16)
    res = builder.fptrunc(builder.fmul(builder.fpext(j, _F64x16), pow2), _F32x16)
    alt = builder.select(builder.fcmp_ordered("<=", n, _c16(0.0)), _c16(0.0), _c16(float("inf")))
    return builder.select(big, alt, res)


def _vec16(builder, context, sig_arg, arr, off):
    return builder.bitcast(_f32_ptr(context, builder, sig_arg, arr, off), _F32x16.as_pointer())


@intrinsic
def row_dot_f16_512(typingctx, x, xo, y, yo, n):
    """ggml_vec_dot_f16 (AVX-512) over n elements, n a multiple of 64 (the caller adds the
    leftovers in double): x[xo:] float32 values that are fp16-exact, y[yo:] fp16 bits, flat
    offsets into C-contiguous arrays. Twin: dot_f16_ref."""
    sig = types.float32(x, types.int64, y, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        xp = _f32_ptr(context, builder, signature.args[0], args[0], args[1])
        yp = builder.bitcast(_ptr(context, builder, signature.args[2], args[2], args[3]), ir.HalfType().as_pointer())
        n = args[4]
        fma = _fma16(builder)
        entry = builder.basic_block
        loop = builder.append_basic_block("f16dot512.loop")
        body = builder.append_basic_block("f16dot512.body")
        done = builder.append_basic_block("f16dot512.done")
        builder.branch(loop)
        builder.position_at_end(loop)
        i = builder.phi(_I64)
        i.add_incoming(ir.Constant(_I64, 0), entry)
        acc = []
        for _ in range(4):
            a = builder.phi(_F32x16)
            a.add_incoming(ir.Constant(_F32x16, [0.0] * 16), entry)
            acc.append(a)
        builder.cbranch(builder.icmp_signed("<", i, n), body, done)
        builder.position_at_end(body)
        for j in range(4):
            off = builder.add(i, ir.Constant(_I64, 16 * j))
            xv = builder.load(builder.bitcast(builder.gep(xp, [off]), _F32x16.as_pointer()), align=4)
            yv = builder.fpext(builder.load(builder.bitcast(builder.gep(yp, [off]), _F16x16.as_pointer()), align=2),
                               _F32x16)
            acc[j].add_incoming(fma(xv, yv, acc[j]), body)
        i.add_incoming(builder.add(i, ir.Constant(_I64, STEP)), body)
        builder.branch(loop)
        builder.position_at_end(done)
        v = builder.fadd(builder.fadd(acc[0], acc[2]), builder.fadd(acc[1], acc[3]))
        return _reduce16_ir(builder, v)

    return sig, codegen


@intrinsic
def exp16_shifted(typingctx, s, so, mx):
    """ggml_vec_soft_max_f32's AVX-512 step: s[so:so+16] = ggml_v_expf(s - mx) in place; returns
    their _mm512_reduce_add_ps (the caller sums these in double). Twin: soft_max_ref."""
    sig = types.float32(s, types.int64, types.float32)

    def codegen(context, builder, signature, args):
        p = _vec16(builder, context, signature.args[0], args[0], args[1])
        x = builder.fsub(builder.load(p, align=4), _splat(builder, args[2], _F32x16))
        ex = _v_expf512_ir(builder, x)
        builder.store(ex, p, align=4)
        return _reduce16_ir(builder, ex)

    return sig, codegen


@intrinsic
def silu_mul16(typingctx, g, go, u, uo, out, oo):
    """ggml_vec_swiglu_f32's AVX-512 step: out[oo:oo+16] = ggml_v_silu(g) * u. Twin: swiglu_ref."""
    sig = types.void(g, types.int64, u, types.int64, out, types.int64)

    def codegen(context, builder, signature, args):
        x = builder.load(_vec16(builder, context, signature.args[0], args[0], args[1]), align=4)
        y = builder.load(_vec16(builder, context, signature.args[2], args[2], args[3]), align=4)
        e = _v_expf512_ir(builder, builder.fsub(_c16(0.0), x))
        silu = builder.fdiv(x, builder.fadd(_c16(1.0), e))
        builder.store(builder.fmul(silu, y), _vec16(builder, context, signature.args[4], args[4], args[5]), align=4)
        return context.get_dummy_value()

    return sig, codegen
