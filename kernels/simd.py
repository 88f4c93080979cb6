"""Scalar building blocks for reproducing ggml's AVX2 arithmetic bit for bit inside Numba.

llama.cpp's CPU kernels accumulate in eight float32 lanes with fused multiply-adds and reduce
the lanes in a fixed order at the end (``hsum_float_8``). The model is sensitive to the last
bit: an activation that lands on the other side of a q8 rounding boundary changes the next
layer, so we mirror that order instead of letting LLVM reassociate. These intrinsics give
Numba the exact operations it lacks: a single-rounding ``fma`` and float/int bit casts.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def fma32(typingctx, a, b, c):
    """float32 a * b + c with one rounding (llvm.fma.f32, vfmadd on x86)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f], fnty=ir.FunctionType(f, [f, f, f]))
        return builder.call(fn, args)

    return sig, codegen


def _libm_f32(name: str, why: str):
    """An intrinsic calling the C library's float function `name` (float -> float), the very
    symbol llama.cpp's ggml links, resolved in this process (Python already loads libm)."""

    @intrinsic
    def call(typingctx, x):
        sig = types.float32(types.float32)

        def codegen(context, builder, signature, args):
            f = ir.FloatType()
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f, [f]), name)
            return builder.call(fn, args)

        return sig, codegen

    call.__doc__ = f"The C library's {name}: {why}"
    return call


# glibc's tanhf is not correctly rounded before 2.41 (on Debian 12's 2.36, 20% of random inputs
# differ from tanh rounded from double), so these are not math.tanh / math.log2 in float32
libm_tanhf = _libm_f32("tanhf", "ggml_vec_tanh_f32 calls it per element (soft-capping)")
libm_log2f = _libm_f32("log2f", "quantize_row_mxfp4_ref's exponent, floorf(log2f(amax))")
libm_expf = _libm_f32("expf", "the scalar leftovers of ggml_vec_soft_max_f32, attention sinks, swiglu_oai")


@intrinsic
def f32_as_i32(typingctx, x):
    """The bit pattern of a float32 as int32."""
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def i32_as_f32(typingctx, x):
    """The float32 whose bit pattern is the int32 x."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@njit(inline="always", cache=True)
def hsum8(a0, a1, a2, a3, a4, a5, a6, a7):
    """hsum_float_8: (lanes 0..3 + lanes 4..7), then pairs (0+2, 1+3), then the two."""
    r0 = a4 + a0
    r1 = a5 + a1
    r2 = a6 + a2
    r3 = a7 + a3
    return (r0 + r2) + (r1 + r3)


@njit(inline="always", cache=True)
def reduce8_hadd(a0, a1, a2, a3, a4, a5, a6, a7):
    """The tail of GGML_F32x8_REDUCE: low + high halves, then two _mm_hadd_ps."""
    t0 = a0 + a4
    t1 = a1 + a5
    t2 = a2 + a6
    t3 = a3 + a7
    return (t0 + t1) + (t2 + t3)


def _hexf(s: str) -> np.float32:
    return np.float32(float.fromhex(s))


# ggml_v_expf's constants, exactly as written in ggml-cpu/vec.h
EXP_R = _hexf("0x1.8p23")
EXP_LOG2E = _hexf("0x1.715476p+0")
EXP_LN2_HI = _hexf("0x1.62e4p-1")
EXP_LN2_LO = _hexf("0x1.7f7d1cp-20")
EXP_P0 = _hexf("0x1.0e4020p-7")
EXP_P1 = _hexf("0x1.573e2ep-5")
EXP_P2 = _hexf("0x1.555e66p-3")
EXP_P3 = _hexf("0x1.fffdb6p-2")
EXP_P4 = _hexf("0x1.ffffecp-1")
ONE_BITS = np.int32(np.float32(1.0).view(np.int32))
SLOW_G = np.int32(np.uint32(0x82000000).view(np.int32))


@njit(inline="always", cache=True)
def v_expf(x):
    """One lane of ggml_v_expf (AVX2 + FMA), ggml's polynomial exp used by softmax and SiLU.

    Valid when every lane of the vector takes the fast path (|n| <= 126), or for any lane
    when the vector took the slow path: the slow path gives the fast path's value whenever
    |n| <= 126, so a lane's result never depends on its neighbours."""
    z = fma32(x, EXP_LOG2E, EXP_R)
    n = z - EXP_R
    b = fma32(-n, EXP_LN2_LO, fma32(-n, EXP_LN2_HI, x))  # fnmadd(a, b, c) = c - a * b, fused
    e = np.int32(f32_as_i32(z) << 23)
    k = i32_as_f32(np.int32(e + ONE_BITS))
    u = b * b
    j = fma32(fma32(fma32(EXP_P0, b, EXP_P1), u, fma32(EXP_P2, b, EXP_P3)), u, EXP_P4 * b)
    an = abs(n)
    if not an > np.float32(126.0):
        return fma32(j, k, k)
    g = SLOW_G if n <= 0 else np.int32(0)
    s1 = i32_as_f32(np.int32(g + np.int32(0x7F000000)))
    s2 = i32_as_f32(np.int32(e - g))
    if an > np.float32(192.0):
        return s1 * s1
    return fma32(s2, j, s2) * s1




# -- AVX2 block kernels ----------------------------------------------------------------------
#
# The integer part of a ggml dot product on x86 is two instructions a block: _mm256_maddubs_epi16
# (u8 x s8 -> pairs summed to i16) and _mm256_madd_epi16 with ones (-> eight i32 lanes of four
# products each). LLVM does not find them in scalar code, so these intrinsics emit them, then
# convert the lanes to float and fuse-multiply-add them into eight float accumulators kept in
# an array: exactly ggml's `acc = _mm256_fmadd_ps(d, q, acc)`.

_I8x32 = ir.VectorType(ir.IntType(8), 32)
_I8x16 = ir.VectorType(ir.IntType(8), 16)
_I16x16 = ir.VectorType(ir.IntType(16), 16)
_I32x8 = ir.VectorType(ir.IntType(32), 8)
_F32x8 = ir.VectorType(ir.FloatType(), 8)


def _ptr(context, builder, arrty, arr, off):
    a = context.make_array(arrty)(context, builder, arr)
    return builder.gep(a.data, [off])


def _load(builder, ptr, vty):
    return builder.load(builder.bitcast(ptr, vty.as_pointer()), align=1)


def _x86(builder, name, ret, args):
    fn = builder.module.declare_intrinsic(name, fnty=ir.FunctionType(ret, [a.type for a in args]))
    return builder.call(fn, args)


def _splat(builder, value, vty):
    undef = ir.Constant(vty, ir.Undefined)
    v = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, undef, ir.Constant(ir.VectorType(ir.IntType(32), vty.count), [0] * vty.count))


ACC8 = types.UniTuple(types.float32, 8)


def _tuple_to_vec(builder, tup):
    v = ir.Constant(_F32x8, ir.Undefined)
    for i in range(8):
        v = builder.insert_element(v, builder.extract_value(tup, i), ir.Constant(ir.IntType(32), i))
    return v


def _vec_to_tuple(context, builder, vec):
    out = context.get_constant_undef(ACC8)
    for i in range(8):
        out = builder.insert_value(out, builder.extract_element(vec, ir.Constant(ir.IntType(32), i)), i)
    return out


def _madd_fma(context, builder, ux, sy, dd, acc):
    """fma(dd, float(madd(maddubs(ux, sy), 1)), acc) on eight lanes (mul_sum_us8_pairs_float and
    _mm256_fmadd_ps). The accumulator travels as a tuple of eight floats, which LLVM keeps in one
    vector register across the caller's loop."""
    dot = _x86(builder, "llvm.x86.avx2.pmadd.ub.sw", _I16x16, [ux, sy])
    ones = ir.Constant(_I16x16, [1] * 16)
    lanes = _x86(builder, "llvm.x86.avx2.pmadd.wd", _I32x8, [dot, ones])
    f = builder.sitofp(lanes, _F32x8)
    fma = builder.module.declare_intrinsic("llvm.fma.v8f32", fnty=ir.FunctionType(_F32x8, [_F32x8] * 3))
    res = builder.call(fma, [_splat(builder, dd, _F32x8), f, _tuple_to_vec(builder, acc)])
    return _vec_to_tuple(context, builder, res)


def _signed_pairs(builder, x, y):
    """mul_sum_i8_pairs_float's sign trick: |x| (unsigned) and y with x's sign."""
    zero = ir.Constant(_I8x32, [0] * 32)
    neg = builder.icmp_signed("<", x, zero)
    ax = builder.select(neg, builder.sub(zero, x), x)
    sy = builder.select(neg, builder.sub(zero, y), y)
    return ax, sy


def _nibbles32(builder, ptr):
    """bytes_from_nibbles_32: 16 bytes -> low nibbles (values 0..15) then high nibbles (16..31)."""
    x = _load(builder, ptr, _I8x16)
    mask = ir.Constant(_I8x16, [15] * 16)
    lo = builder.and_(x, mask)
    hi = builder.and_(builder.lshr(x, ir.Constant(_I8x16, [4] * 16)), mask)
    return builder.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(ir.IntType(32), 32), list(range(32))))


def _iq4nl_values(builder, ptr):
    """The 32 int8 values of an IQ4_NL block's 16 nibble bytes at ptr, low nibbles first:
    kvalues_iq4nl looked up by _mm256_shuffle_epi8, as ggml's AVX2 IQ4 kernels do."""
    from .grids import KVALUES_IQ4NL

    table = ir.Constant(_I8x32, [int(v) for v in KVALUES_IQ4NL] * 2)
    return _x86(builder, "llvm.x86.avx2.pshuf.b", _I8x32, [table, _nibbles32(builder, ptr)])


def _iq4nl_lanes(builder, w_ptr, q_ptr):
    """madd(maddubs(|v|, sign(v) * q), 1): lane l holds the exact sum over elements 4l..4l+3."""
    ax, sy = _signed_pairs(builder, _iq4nl_values(builder, w_ptr), _load(builder, q_ptr, _I8x32))
    dot = _x86(builder, "llvm.x86.avx2.pmadd.ub.sw", _I16x16, [ax, sy])
    return _x86(builder, "llvm.x86.avx2.pmadd.wd", _I32x8, [dot, ir.Constant(_I16x16, [1] * 16)])


@intrinsic
def isum_iq4nl(typingctx, w, wo, q, qo):
    """The exact integer dot product of one IQ4_NL block's nibbles at w[wo] with q[qo:qo+32]."""
    sig = types.int32(w, wo, q, qo)

    def codegen(context, builder, signature, args):
        lanes = _iq4nl_lanes(builder, _ptr(context, builder, signature.args[0], args[0], args[1]),
                             _ptr(context, builder, signature.args[2], args[2], args[3]))
        return _isum8_ir(builder, lanes)

    return sig, codegen


ILANES8 = types.UniTuple(types.int32, 8)


@intrinsic
def lanes_iq4nl_scaled(typingctx, lanes, w, wo, q, qo, ls):
    """lanes + ls * (the eight integer lanes of 16 kvalues_iq4nl nibble bytes at w[wo] against
    q[qo:qo+32]): one 32-value chunk of an IQ4_XS super-block (exact integers)."""
    sig = ILANES8(ILANES8, w, wo, q, qo, types.int32)

    def codegen(context, builder, signature, args):
        v = _iq4nl_lanes(builder, _ptr(context, builder, signature.args[1], args[1], args[2]),
                         _ptr(context, builder, signature.args[3], args[3], args[4]))
        v = builder.mul(v, _splat(builder, args[5], _I32x8))
        out = context.get_constant_undef(ILANES8)
        for i in range(8):
            e = builder.add(builder.extract_value(args[0], i), builder.extract_element(v, ir.Constant(ir.IntType(32), i)))
            out = builder.insert_value(out, e, i)
        return out

    return sig, codegen


@intrinsic
def block_iq4nl(typingctx, acc, w, wo, q, qo, dd):
    """acc + one IQ4_NL block against q8_0: fma(dd, lane, acc) on the eight lanes of
    ggml_vec_dot_iq4_nl_q8_0's loop body (AVX2)."""
    sig = ACC8(ACC8, w, wo, q, qo, types.float32)

    def codegen(context, builder, signature, args):
        lanes = _iq4nl_lanes(builder, _ptr(context, builder, signature.args[1], args[1], args[2]),
                             _ptr(context, builder, signature.args[3], args[3], args[4]))
        f = builder.sitofp(lanes, _F32x8)
        fma = builder.module.declare_intrinsic("llvm.fma.v8f32", fnty=ir.FunctionType(_F32x8, [_F32x8] * 3))
        res = builder.call(fma, [_splat(builder, args[5], _F32x8), f, _tuple_to_vec(builder, args[0])])
        return _vec_to_tuple(context, builder, res)

    return sig, codegen


@intrinsic
def block_q8(typingctx, acc, w, wo, q, qo, dd):
    """acc + one Q8_0 block against q8_0: ggml_vec_dot_q8_0_q8_0's loop body (AVX2)."""
    sig = ACC8(ACC8, w, wo, q, qo, types.float32)

    def codegen(context, builder, signature, args):
        x = _load(builder, _ptr(context, builder, signature.args[1], args[1], args[2]), _I8x32)
        y = _load(builder, _ptr(context, builder, signature.args[3], args[3], args[4]), _I8x32)
        ax, sy = _signed_pairs(builder, x, y)
        return _madd_fma(context, builder, ax, sy, args[5], args[0])

    return sig, codegen


@intrinsic
def block_q4(typingctx, acc, w, wo, q, qo, dd, signed):
    """acc + one Q4 block (16 bytes of nibbles at w[wo]) against q8: Q4_1 (nibbles as they are,
    u8 x s8) or Q4_0 (signed: nibbles - 8, then the sign trick)."""
    sig = ACC8(ACC8, w, wo, q, qo, types.float32, types.boolean)

    def codegen(context, builder, signature, args):
        x = _nibbles32(builder, _ptr(context, builder, signature.args[1], args[1], args[2]))
        y = _load(builder, _ptr(context, builder, signature.args[3], args[3], args[4]), _I8x32)
        ax, sy = _signed_pairs(builder, builder.sub(x, ir.Constant(_I8x32, [8] * 32)), y)
        return _madd_fma(context, builder, builder.select(args[6], ax, x), builder.select(args[6], sy, y),
                         args[5], args[0])

    return sig, codegen


@intrinsic
def block_q5(typingctx, acc, w, wo, qh, q, qo, dd, signed):
    """acc + one Q5 block: nibbles at w[wo] with the fifth bits in qh (uint32). Q5_1 (values
    0..31, u8 x s8) or Q5_0 (signed: value - 16, then the sign trick)."""
    sig = ACC8(ACC8, w, wo, types.uint32, q, qo, types.float32, types.boolean)

    def codegen(context, builder, signature, args):
        x = _nibbles32(builder, _ptr(context, builder, signature.args[1], args[1], args[2]))
        bits = builder.bitcast(args[3], ir.VectorType(ir.IntType(1), 32))
        x = builder.or_(x, builder.select(bits, ir.Constant(_I8x32, [16] * 32), ir.Constant(_I8x32, [0] * 32)))
        y = _load(builder, _ptr(context, builder, signature.args[4], args[4], args[5]), _I8x32)
        ax, sy = _signed_pairs(builder, builder.sub(x, ir.Constant(_I8x32, [16] * 32)), y)
        return _madd_fma(context, builder, builder.select(args[7], ax, x), builder.select(args[7], sy, y),
                         args[6], args[0])

    return sig, codegen


_F16x8 = ir.VectorType(ir.HalfType(), 8)


# -- whole-row dot products -------------------------------------------------------------------
#
# Passing the accumulator through Numba as a tuple costs a round trip through scalars every
# block (eight extracts and eight inserts on the loop-carried path), which made the loop three
# times slower than ggml's. These intrinsics run the whole row in LLVM IR, so the accumulator
# is a vector phi that never leaves its register. Block geometry comes from gguf.constants
# via the callers (block bytes, offsets of scales and quants).

_I64 = ir.IntType(64)
_F32 = ir.FloatType()


def _f16_at(builder, base, off):
    """float32 of the fp16 stored at base + off (an exact conversion: vcvtph2ps with F16C)."""
    p = builder.bitcast(builder.gep(base, [off]), ir.HalfType().as_pointer())
    return builder.fpext(builder.load(p, align=1), _F32)


def _isum8_ir(builder, v):
    """The sum of eight int32 lanes (exact: any order gives the same)."""
    e = [builder.extract_element(v, ir.Constant(ir.IntType(32), i)) for i in range(8)]
    return builder.add(builder.add(builder.add(e[0], e[1]), builder.add(e[2], e[3])),
                       builder.add(builder.add(e[4], e[5]), builder.add(e[6], e[7])))


def _hsum8_ir(builder, v):
    """hsum_float_8, in its order."""
    e = [builder.extract_element(v, ir.Constant(ir.IntType(32), i)) for i in range(8)]
    s = [builder.fadd(e[i + 4], e[i]) for i in range(4)]
    return builder.fadd(builder.fadd(s[0], s[2]), builder.fadd(s[1], s[3]))


def _row_intrinsic(kind, ntok=1, repacked=False, amx=False):
    """Build the codegen of a row dot product over nb blocks for one legacy block kind
    ('q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1') against ntok activation rows at once. Arguments:
    (w, q_0..q_{ntok-1}, d_0.., s_0.., nb, bs): w the row's bytes, q_t an activation row (int8),
    d_t and s_t its per-block scales (float32), nb blocks of bs bytes. Each token keeps its own
    accumulators, so every result has exactly the bits of a one-token call; the weights are
    unpacked once for all tokens, and the independent fma chains overlap (prompt processing).

    repacked (Q4_0 only): the order of ggml_gemv_q4_0_8x8_q8_0, which ggml uses for weights it
    repacked at load time: the block's eight lanes are summed as integers (exactly) and one
    float accumulator takes acc = fma(isum, d_w * d_x, acc).

    amx (Q4_0, Q4_1, Q8_0): the order of the AMX buffer's tinygemm_kernel_vnni (dot/amx.py),
    the repacked order, with Q4_1's min folded into the same accumulator after each block:
    acc = fma(m_w, s_x, fma(isum, d_w * d_x, acc))."""
    single = repacked or amx

    def codegen(context, builder, signature, args):
        i8p = ir.IntType(8).as_pointer()
        w_ty = signature.args[0]
        wbase = builder.bitcast(context.make_array(w_ty)(context, builder, args[0]).data, i8p)
        qb = [builder.bitcast(context.make_array(signature.args[1 + t])(context, builder, args[1 + t]).data, i8p)
              for t in range(ntok)]
        db = [context.make_array(signature.args[1 + ntok + t])(context, builder, args[1 + ntok + t]).data
              for t in range(ntok)]
        sb = [context.make_array(signature.args[1 + 2 * ntok + t])(context, builder, args[1 + 2 * ntok + t]).data
              for t in range(ntok)]
        nb, bs = args[1 + 3 * ntok], args[2 + 3 * ntok]
        fma8 = builder.module.declare_intrinsic("llvm.fma.v8f32", fnty=ir.FunctionType(_F32x8, [_F32x8] * 3))
        fma1 = builder.module.declare_intrinsic("llvm.fma.f32", fnty=ir.FunctionType(_F32, [_F32] * 3))
        c64 = lambda v: ir.Constant(_I64, v)  # noqa: E731
        has_min = kind in ("q4_1", "q5_1")

        entry = builder.basic_block
        loop = builder.append_basic_block("row.loop")
        body = builder.append_basic_block("row.body")
        done = builder.append_basic_block("row.done")
        builder.branch(loop)

        builder.position_at_end(loop)
        i = builder.phi(_I64)
        i.add_incoming(c64(0), entry)
        accs, summs = [], []
        acc_ty = _F32 if single else _F32x8
        for t in range(ntok):
            a = builder.phi(acc_ty)
            a.add_incoming(ir.Constant(acc_ty, 0.0) if single else ir.Constant(_F32x8, [0.0] * 8), entry)
            m = builder.phi(_F32)
            m.add_incoming(ir.Constant(_F32, 0.0), entry)
            accs.append(a)
            summs.append(m)
        builder.cbranch(builder.icmp_signed("<", i, nb), body, done)

        builder.position_at_end(body)
        o = builder.mul(i, bs)
        d_w = _f16_at(builder, wbase, o)
        m_w = _f16_at(builder, wbase, builder.add(o, c64(2))) if has_min else None
        # the weights of the block, unpacked once
        if kind == "q8_0":
            x = _load(builder, builder.gep(wbase, [builder.add(o, c64(2))]), _I8x32)
        elif kind in ("q4_0", "q4_1"):
            x = _nibbles32(builder, builder.gep(wbase, [builder.add(o, c64(2 if kind == "q4_0" else 4))]))
        else:
            qh_off, qs_off = (2, 6) if kind == "q5_0" else (4, 8)
            qhp = builder.bitcast(builder.gep(wbase, [builder.add(o, c64(qh_off))]), ir.IntType(32).as_pointer())
            bits = builder.bitcast(builder.load(qhp, align=1), ir.VectorType(ir.IntType(1), 32))
            x = _nibbles32(builder, builder.gep(wbase, [builder.add(o, c64(qs_off))]))
            x = builder.or_(x, builder.select(bits, ir.Constant(_I8x32, [16] * 32), ir.Constant(_I8x32, [0] * 32)))
        if kind in ("q4_0", "q5_0"):
            x = builder.sub(x, ir.Constant(_I8x32, [8 if kind == "q4_0" else 16] * 32))
        signed = kind in ("q8_0", "q4_0", "q5_0")
        for t in range(ntok):
            y = _load(builder, builder.gep(qb[t], [builder.mul(i, c64(32))]), _I8x32)
            ux, uy = _signed_pairs(builder, x, y) if signed else (x, y)
            if has_min and not amx:  # summs += m_w * s_x, fused as GCC compiles it
                s_x = builder.load(builder.gep(sb[t], [i]), align=4)
                new_summs = builder.call(fma1, [m_w, s_x, summs[t]])
            else:
                new_summs = summs[t]
            dot = _x86(builder, "llvm.x86.avx2.pmadd.ub.sw", _I16x16, [ux, uy])
            lanes = _x86(builder, "llvm.x86.avx2.pmadd.wd", _I32x8, [dot, ir.Constant(_I16x16, [1] * 16)])
            dd = builder.fmul(d_w, builder.load(builder.gep(db[t], [i]), align=4))
            if single:
                isum = _isum8_ir(builder, lanes)
                new_acc = builder.call(fma1, [builder.sitofp(isum, _F32), dd, accs[t]])
                if has_min:
                    new_acc = builder.call(fma1, [m_w, builder.load(builder.gep(sb[t], [i]), align=4), new_acc])
            else:
                new_acc = builder.call(fma8, [_splat(builder, dd, _F32x8), builder.sitofp(lanes, _F32x8), accs[t]])
            accs[t].add_incoming(new_acc, body)
            summs[t].add_incoming(new_summs, body)
        i.add_incoming(builder.add(i, c64(1)), body)
        builder.branch(loop)

        builder.position_at_end(done)
        outs = []
        for t in range(ntok):
            total = accs[t] if single else _hsum8_ir(builder, accs[t])
            outs.append(builder.fadd(total, summs[t]) if has_min and not amx else total)
        return _pack(context, builder, signature, outs)

    return codegen


def _pack(context, builder, signature, outs):
    """The results of an ntok-row intrinsic: a float32, or a tuple of ntok of them."""
    if len(outs) == 1:
        return outs[0]
    res = context.get_constant_undef(signature.return_type)
    for t, v in enumerate(outs):
        res = builder.insert_value(res, v, t)
    return res


def _row_dot_family(make_codegen, what):
    """Intrinsics for one row of a weight type against 1, 2 and 4 activation rows, with
    arguments (w, q_0.., d_0.., s_0.., nb, bs) as _row_intrinsic describes; several rows share
    the unpacked weights and every result has the bits of a one-row call."""

    @intrinsic
    def one(typingctx, w, q, d, s, nb, bs):
        return types.float32(w, q, d, s, types.int64, types.int64), make_codegen(1)

    @intrinsic
    def two(typingctx, w, q0, q1, d0, d1, s0, s1, nb, bs):
        sig = types.UniTuple(types.float32, 2)(w, q0, q1, d0, d1, s0, s1, types.int64, types.int64)
        return sig, make_codegen(2)

    @intrinsic
    def four(typingctx, w, q0, q1, q2, q3, d0, d1, d2, d3, s0, s1, s2, s3, nb, bs):
        sig = types.UniTuple(types.float32, 4)(w, q0, q1, q2, q3, d0, d1, d2, d3, s0, s1, s2, s3,
                                               types.int64, types.int64)
        return sig, make_codegen(4)

    for f, n in ((one, 1), (two, 2), (four, 4)):
        f.__doc__ = f"{what}, against {n} activation row{'s' if n > 1 else ''}."
    return one, two, four


row_dot_q8_0, row_dot2_q8_0, row_dot4_q8_0 = _row_dot_family(
    lambda n: _row_intrinsic("q8_0", n), "ggml_vec_dot_q8_0_q8_0 (AVX2) over one row")
row_dot_q4_0, row_dot2_q4_0, row_dot4_q4_0 = _row_dot_family(
    lambda n: _row_intrinsic("q4_0", n), "ggml_vec_dot_q4_0_q8_0 (AVX2) over one row")
row_dot_q4_0_repacked, row_dot2_q4_0_repacked, row_dot4_q4_0_repacked = _row_dot_family(
    lambda n: _row_intrinsic("q4_0", n, repacked=True), "A Q4_0 row in ggml_gemv_q4_0_8x8_q8_0's order")
row_dot_q4_1, row_dot2_q4_1, row_dot4_q4_1 = _row_dot_family(
    lambda n: _row_intrinsic("q4_1", n), "ggml_vec_dot_q4_1_q8_1 (AVX2) over one row")
row_dot_q4_1_amx, row_dot2_q4_1_amx, row_dot4_q4_1_amx = _row_dot_family(
    lambda n: _row_intrinsic("q4_1", n, amx=True), "A Q4_1 row in the AMX buffer's tinygemm_kernel_vnni order")
row_dot_q8_0_amx, row_dot2_q8_0_amx, row_dot4_q8_0_amx = _row_dot_family(
    lambda n: _row_intrinsic("q8_0", n, amx=True), "A Q8_0 row in the AMX buffer's tinygemm_kernel_vnni order")
def _amx_rows_codegen(kind):
    """The AMX order (see _row_intrinsic's amx) for eight consecutive rows of W (uint8[R, nb*bs],
    C-contiguous) from row r0 against one activation row; arguments (W, r0, q, d, s, nb, bs).
    Like ggml's tinygemm_kernel_vnni, the rows sit in the lanes of one float vector: each row's
    eight integer lanes are summed (exactly) by a transposing tree of phaddd, and the per-row
    chains acc = fma(isum, d_w * d_x, acc) (then fma(m_w, s_x, acc) for Q4_1) run side by side,
    a lane each, with every lane's arithmetic that of its row alone."""

    def codegen(context, builder, signature, args):
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        arr = lambda k: context.make_array(signature.args[k])(context, builder, args[k]).data  # noqa: E731
        nb, bs = args[5], args[6]
        row_bytes = builder.mul(nb, bs)
        wbase = builder.gep(builder.bitcast(arr(0), i8p), [builder.mul(args[1], row_bytes)])
        rows = [builder.gep(wbase, [builder.mul(ir.Constant(_I64, k), row_bytes)]) for k in range(AMX_ROWS)]
        qb, db, sb = builder.bitcast(arr(2), i8p), arr(3), arr(4)
        fma8 = builder.module.declare_intrinsic("llvm.fma.v8f32", fnty=ir.FunctionType(_F32x8, [_F32x8] * 3))
        c64 = lambda v: ir.Constant(_I64, v)  # noqa: E731
        hadd = lambda a, b: _x86(builder, "llvm.x86.avx2.phadd.d", _I32x8, [a, b])  # noqa: E731
        entry = builder.basic_block
        loop = builder.append_basic_block("amx.loop")
        body = builder.append_basic_block("amx.body")
        done = builder.append_basic_block("amx.done")
        builder.branch(loop)
        builder.position_at_end(loop)
        i = builder.phi(_I64)
        i.add_incoming(c64(0), entry)
        acc = builder.phi(_F32x8)
        acc.add_incoming(ir.Constant(_F32x8, [0.0] * 8), entry)
        builder.cbranch(builder.icmp_signed("<", i, nb), body, done)
        builder.position_at_end(body)
        o = builder.mul(i, bs)
        y = _load(builder, builder.gep(qb, [builder.mul(i, c64(32))]), _I8x32)
        dx = builder.load(builder.gep(db, [i]), align=4)
        lanes, d_w, m_w = [], ir.Constant(_F32x8, ir.Undefined), ir.Constant(_F32x8, ir.Undefined)
        for k in range(AMX_ROWS):
            blk = builder.gep(rows[k], [o])
            d_w = builder.insert_element(d_w, _f16_at(builder, blk, c64(0)), ir.Constant(i32, k))
            if kind == "q8_0":
                ux, uy = _signed_pairs(builder, _load(builder, builder.gep(blk, [c64(2)]), _I8x32), y)
            elif kind == "q4_0":
                x = builder.sub(_nibbles32(builder, builder.gep(blk, [c64(2)])), ir.Constant(_I8x32, [8] * 32))
                ux, uy = _signed_pairs(builder, x, y)
            else:
                ux, uy = _nibbles32(builder, builder.gep(blk, [c64(4)])), y
                m_w = builder.insert_element(m_w, _f16_at(builder, blk, c64(2)), ir.Constant(i32, k))
            dot = _x86(builder, "llvm.x86.avx2.pmadd.ub.sw", _I16x16, [ux, uy])
            lanes.append(_x86(builder, "llvm.x86.avx2.pmadd.wd", _I32x8, [dot, ir.Constant(_I16x16, [1] * 16)]))
        h0 = hadd(hadd(lanes[0], lanes[1]), hadd(lanes[2], lanes[3]))  # rows 0..3, low and high halves
        h1 = hadd(hadd(lanes[4], lanes[5]), hadd(lanes[6], lanes[7]))
        lo = builder.shuffle_vector(h0, h1, ir.Constant(_I32x8, [0, 1, 2, 3, 8, 9, 10, 11]))
        hi = builder.shuffle_vector(h0, h1, ir.Constant(_I32x8, [4, 5, 6, 7, 12, 13, 14, 15]))
        isum = builder.add(lo, hi)  # lane k: row k's block sum
        new = builder.call(fma8, [builder.sitofp(isum, _F32x8), builder.fmul(d_w, _splat(builder, dx, _F32x8)), acc])
        if kind == "q4_1":
            sx = builder.load(builder.gep(sb, [i]), align=4)
            new = builder.call(fma8, [m_w, _splat(builder, sx, _F32x8), new])
        acc.add_incoming(new, body)
        i.add_incoming(builder.add(i, c64(1)), body)
        builder.branch(loop)
        builder.position_at_end(done)
        outs = [builder.extract_element(acc, ir.Constant(i32, k)) for k in range(AMX_ROWS)]
        return _pack(context, builder, signature, outs)

    return codegen


AMX_ROWS = 8  # rows a call of rows8_*_amx


def _amx_rows(kind):
    @intrinsic
    def rows8(typingctx, W, r0, q, d, s, nb, bs):
        sig = types.UniTuple(types.float32, AMX_ROWS)(W, types.int64, q, d, s, types.int64, types.int64)
        return sig, _amx_rows_codegen(kind)

    rows8.__doc__ = f"Rows r0..r0+{AMX_ROWS - 1} of a {kind.upper()} matrix in the AMX order, one activation row."
    return rows8


rows8_q4_0_amx, rows8_q4_1_amx, rows8_q8_0_amx = (_amx_rows(k) for k in ("q4_0", "q4_1", "q8_0"))


row_dot_q5_0, row_dot2_q5_0, row_dot4_q5_0 = _row_dot_family(
    lambda n: _row_intrinsic("q5_0", n), "ggml_vec_dot_q5_0_q8_0 (AVX2) over one row")
row_dot_q5_1, row_dot2_q5_1, row_dot4_q5_1 = _row_dot_family(
    lambda n: _row_intrinsic("q5_1", n), "ggml_vec_dot_q5_1_q8_1 (AVX2) over one row")


def _q6k_codegen(ntok, amx=False, tiled=False):
    """ggml_vec_dot_q6_K_q8_K (AVX2) over one row against ntok q8_K rows; arguments
    (w, q_0.., d_0.., bsums_0.., nb, bs). Per super-block, eight int32 lanes
    sumi = sum over 32-value chunks of madd(scales, maddubs(q6, q8)) minus
    32 * madd(bsums, scales), then acc = fma(d_x * d_w, float(sumi), acc); hsum_float_8.
    The 6-bit weights are unpacked once for all ntok rows.

    amx: the AMX buffer's tinygemm_kernel_vnni order: the lanes summed as integers (exact), one
    float accumulator, acc = fma(float(isum), d_w * d_x, acc).

    tiled: ggml's tiled K-quant matmul (tiled/tiled-kernel.cpp, AVX2 microtile), which takes
    prompt batches of 8 rows or more: acc = fma(d_w * float(isum), d_x, acc)."""
    acc_ty = _F32 if (amx or tiled) else _F32x8

    def codegen(context, builder, signature, args):
        i8p = ir.IntType(8).as_pointer()
        arr = lambda k: context.make_array(signature.args[k])(context, builder, args[k]).data  # noqa: E731
        wbase = builder.bitcast(arr(0), i8p)
        qbase = [builder.bitcast(arr(1 + t), i8p) for t in range(ntok)]
        dbase = [arr(1 + ntok + t) for t in range(ntok)]
        bbase = [arr(1 + 2 * ntok + t) for t in range(ntok)]  # int32 bsums, 16 a block
        nb, bs = args[1 + 3 * ntok], args[2 + 3 * ntok]
        fma8 = builder.module.declare_intrinsic("llvm.fma.v8f32", fnty=ir.FunctionType(_F32x8, [_F32x8] * 3))
        fma1 = builder.module.declare_intrinsic("llvm.fma.f32", fnty=ir.FunctionType(_F32, [_F32] * 3))
        c8 = lambda v: ir.Constant(_I8x32, [v] * 32)  # noqa: E731
        c64 = lambda v: ir.Constant(_I64, v)  # noqa: E731

        entry = builder.basic_block
        loop = builder.append_basic_block("q6k.loop")
        body = builder.append_basic_block("q6k.body")
        done = builder.append_basic_block("q6k.done")
        builder.branch(loop)
        builder.position_at_end(loop)
        i = builder.phi(_I64)
        i.add_incoming(c64(0), entry)
        accs = []
        for _ in range(ntok):
            acc = builder.phi(acc_ty)
            acc.add_incoming(ir.Constant(_F32, 0.0) if (amx or tiled) else ir.Constant(_F32x8, [0.0] * 8), entry)
            accs.append(acc)
        builder.cbranch(builder.icmp_signed("<", i, nb), body, done)

        builder.position_at_end(body)
        o = builder.mul(i, bs)
        blk = builder.gep(wbase, [o])
        scales8 = _load(builder, builder.gep(blk, [c64(192)]), _I8x16)
        scales16 = builder.sext(scales8, _I16x16)
        d_w = _f16_at(builder, blk, c64(208))
        chunks = []  # (quants, scales) of each 32-value chunk, unpacked once
        for j in range(2):
            ql1 = _load(builder, builder.gep(blk, [c64(64 * j)]), _I8x32)
            ql2 = _load(builder, builder.gep(blk, [c64(64 * j + 32)]), _I8x32)
            qh = _load(builder, builder.gep(blk, [c64(128 + 32 * j)]), _I8x32)
            quarters = (
                builder.or_(builder.and_(ql1, c8(15)), builder.shl(builder.and_(qh, c8(3)), c8(4))),
                builder.or_(builder.and_(ql2, c8(15)), builder.shl(builder.and_(builder.lshr(qh, c8(2)), c8(3)), c8(4))),
                builder.or_(builder.lshr(ql1, c8(4)), builder.shl(builder.and_(builder.lshr(qh, c8(4)), c8(3)), c8(4))),
                builder.or_(builder.lshr(ql2, c8(4)), builder.shl(builder.lshr(qh, c8(6)), c8(4))),
            )
            for k, x in enumerate(quarters):
                si = 8 * j + 2 * k  # scales si (values 0..15 of the chunk) and si + 1 (16..31)
                sc = builder.shuffle_vector(scales16, scales16,
                                            ir.Constant(ir.VectorType(ir.IntType(32), 16), [si] * 8 + [si + 1] * 8))
                chunks.append((128 * j + 32 * k, x, sc))
        for t in range(ntok):
            q8 = builder.gep(qbase[t], [builder.mul(i, c64(256))])
            bsums = builder.trunc(builder.load(builder.bitcast(builder.gep(bbase[t], [builder.mul(i, c64(16))]),
                                                               ir.VectorType(ir.IntType(32), 16).as_pointer()), align=4),
                                  _I16x16)
            sub = builder.shl(_x86(builder, "llvm.x86.avx2.pmadd.wd", _I32x8, [bsums, scales16]), ir.Constant(_I32x8, [5] * 8))
            sumi = ir.Constant(_I32x8, [0] * 8)
            for off, x, sc in chunks:
                y = _load(builder, builder.gep(q8, [c64(off)]), _I8x32)
                p16 = _x86(builder, "llvm.x86.avx2.pmadd.ub.sw", _I16x16, [x, y])
                sumi = builder.add(sumi, _x86(builder, "llvm.x86.avx2.pmadd.wd", _I32x8, [sc, p16]))
            sumi = builder.sub(sumi, sub)
            if tiled:
                res = builder.fmul(d_w, builder.sitofp(_isum8_ir(builder, sumi), _F32))
                accs[t].add_incoming(builder.call(fma1, [res, builder.load(builder.gep(dbase[t], [i]), align=4),
                                                         accs[t]]), body)
                continue
            d = builder.fmul(builder.load(builder.gep(dbase[t], [i]), align=4), d_w)
            if amx:
                isum = _isum8_ir(builder, sumi)
                accs[t].add_incoming(builder.call(fma1, [builder.sitofp(isum, _F32), d, accs[t]]), body)
            else:
                accs[t].add_incoming(builder.call(fma8, [_splat(builder, d, _F32x8), builder.sitofp(sumi, _F32x8),
                                                         accs[t]]), body)
        i.add_incoming(builder.add(i, c64(1)), body)
        builder.branch(loop)
        builder.position_at_end(done)
        outs = [accs[t] if (amx or tiled) else _hsum8_ir(builder, accs[t]) for t in range(ntok)]
        return _pack(context, builder, signature, outs)

    return codegen


row_dot_q6_K, _, row_dot4_q6_K = _row_dot_family(_q6k_codegen, "ggml_vec_dot_q6_K_q8_K (AVX2) over one row")
row_dot_q6_K_tiled, _, row_dot4_q6_K_tiled = _row_dot_family(
    lambda n: _q6k_codegen(n, tiled=True), "A Q6_K row in the tiled K-quant matmul's order (8+ activation rows)")
row_dot_q6_K_amx, _, row_dot4_q6_K_amx = _row_dot_family(
    lambda n: _q6k_codegen(n, amx=True), "A Q6_K row in the AMX buffer's tinygemm_kernel_vnni order")


# -- attention ---------------------------------------------------------------------------------
#
# llama.cpp's non-flash attention is two ggml_vec_dot_f16 matmuls around ggml_soft_max_f32.
# These run their inner loops in IR with vector phis, as the row dot products above do.

def _f32_ptr(context, builder, arrty, arr, off):
    return builder.bitcast(_ptr(context, builder, arrty, arr, off), _F32.as_pointer())


def _reduce32_ir(builder, a):
    """GGML_F32x8_REDUCE over four accumulators: (a0 + a2) + (a1 + a3), then the two hadds."""
    v = builder.fadd(builder.fadd(a[0], a[2]), builder.fadd(a[1], a[3]))
    e = [builder.extract_element(v, ir.Constant(ir.IntType(32), i)) for i in range(8)]
    t = [builder.fadd(e[i], e[i + 4]) for i in range(4)]
    return builder.fadd(builder.fadd(t[0], t[1]), builder.fadd(t[2], t[3]))


@intrinsic
def row_dot_f16(typingctx, x, xo, y, yo, n):
    """ggml_vec_dot_f16 (AVX + F16C) over n elements, n a multiple of 32 (the caller adds the
    leftovers): x[xo:] float32 values that are fp16-exact, y[yo:] fp16 bits, both flat offsets
    into C-contiguous arrays. Four accumulators of eight lanes, then GGML_F32x8_REDUCE."""
    sig = types.float32(x, types.int64, y, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        xp = _f32_ptr(context, builder, signature.args[0], args[0], args[1])
        yp = builder.bitcast(_ptr(context, builder, signature.args[2], args[2], args[3]), ir.HalfType().as_pointer())
        n = args[4]
        fma8 = builder.module.declare_intrinsic("llvm.fma.v8f32", fnty=ir.FunctionType(_F32x8, [_F32x8] * 3))
        entry = builder.basic_block
        loop = builder.append_basic_block("f16dot.loop")
        body = builder.append_basic_block("f16dot.body")
        done = builder.append_basic_block("f16dot.done")
        builder.branch(loop)
        builder.position_at_end(loop)
        i = builder.phi(_I64)
        i.add_incoming(ir.Constant(_I64, 0), entry)
        acc = []
        for _ in range(4):
            a = builder.phi(_F32x8)
            a.add_incoming(ir.Constant(_F32x8, [0.0] * 8), entry)
            acc.append(a)
        builder.cbranch(builder.icmp_signed("<", i, n), body, done)
        builder.position_at_end(body)
        for j in range(4):
            off = builder.add(i, ir.Constant(_I64, 8 * j))
            xv = builder.load(builder.bitcast(builder.gep(xp, [off]), _F32x8.as_pointer()), align=4)
            yv = builder.fpext(builder.load(builder.bitcast(builder.gep(yp, [off]), _F16x8.as_pointer()), align=2), _F32x8)
            acc[j].add_incoming(builder.call(fma8, [xv, yv, acc[j]]), body)
        i.add_incoming(builder.add(i, ir.Constant(_I64, 32)), body)
        builder.branch(loop)
        builder.position_at_end(done)
        return _reduce32_ir(builder, acc)

    return sig, codegen


def _c8(v):
    return ir.Constant(_F32x8, [float(v)] * 8)


def _i8(v):
    return ir.Constant(_I32x8, [int(v)] * 8)


def _v_expf_ir(builder, x):
    """ggml_v_expf (AVX2 + FMA) on eight lanes. Each lane's value is the one v_expf gives it
    alone: the fast path where |n| <= 126, else ggml's slow-path formulas, chosen per lane."""
    fma8 = builder.module.declare_intrinsic("llvm.fma.v8f32", fnty=ir.FunctionType(_F32x8, [_F32x8] * 3))
    fma = lambda a, b, c: builder.call(fma8, [a, b, c])  # noqa: E731
    z = fma(x, _c8(EXP_LOG2E), _c8(EXP_R))
    n = builder.fsub(z, _c8(EXP_R))
    neg_n = builder.fneg(n)
    b = fma(neg_n, _c8(EXP_LN2_LO), fma(neg_n, _c8(EXP_LN2_HI), x))
    e = builder.shl(builder.bitcast(z, _I32x8), _i8(23))
    k = builder.bitcast(builder.add(e, _i8(ONE_BITS)), _F32x8)
    u = builder.fmul(b, b)
    j = fma(fma(fma(_c8(EXP_P0), b, _c8(EXP_P1)), u, fma(_c8(EXP_P2), b, _c8(EXP_P3))), u,
            builder.fmul(_c8(EXP_P4), b))
    fast = fma(j, k, k)
    an = builder.bitcast(builder.and_(builder.bitcast(n, _I32x8), _i8(0x7FFFFFFF)), _F32x8)  # andnot(-0.f, n)
    g = builder.select(builder.fcmp_ordered("<=", n, _c8(0.0)), _i8(SLOW_G), _i8(0))
    s1 = builder.bitcast(builder.add(g, _i8(0x7F000000)), _F32x8)
    s2 = builder.bitcast(builder.sub(e, g), _F32x8)
    slow = builder.select(builder.fcmp_ordered(">", an, _c8(192.0)), builder.fmul(s1, s1),
                          builder.fmul(fma(s2, j, s2), s1))
    return builder.select(builder.fcmp_ordered(">", an, _c8(126.0)), slow, fast)


@intrinsic
def exp8_shifted(typingctx, s, so, mx):
    """ggml_vec_soft_max_f32's step on eight scores: s[so:so+8] = ggml_v_expf(s - mx) in place;
    returns their hsum_float_8 (the caller sums these in double)."""
    sig = types.float32(s, types.int64, types.float32)

    def codegen(context, builder, signature, args):
        p = builder.bitcast(_f32_ptr(context, builder, signature.args[0], args[0], args[1]), _F32x8.as_pointer())
        x = builder.fsub(builder.load(p, align=4), _splat(builder, args[2], _F32x8))
        ex = _v_expf_ir(builder, x)
        builder.store(ex, p, align=4)
        return _hsum8_ir(builder, ex)

    return sig, codegen


@intrinsic
def scale8_to_f16(typingctx, s, so, k):
    """s[so:so+8] = fp16(s * k), kept as float32: the probabilities as ggml converts them to
    the F16 vec_dot type (vcvtps2ph, round to nearest even)."""
    sig = types.void(s, types.int64, types.float32)

    def codegen(context, builder, signature, args):
        p = builder.bitcast(_f32_ptr(context, builder, signature.args[0], args[0], args[1]), _F32x8.as_pointer())
        v = builder.fmul(builder.load(p, align=4), _splat(builder, args[2], _F32x8))
        builder.store(builder.fpext(builder.fptrunc(v, _F16x8), _F32x8), p, align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def silu_mul8(typingctx, g, go, u, uo, out, oo):
    """ggml_vec_swiglu_f32's AVX2 step: out[oo:oo+8] = ggml_v_silu(g[go:go+8]) * u[uo:uo+8],
    where ggml_v_silu(x) = x / (1 + ggml_v_expf(0 - x))."""
    sig = types.void(g, types.int64, u, types.int64, out, types.int64)

    def codegen(context, builder, signature, args):
        ptr = lambda k: builder.bitcast(_f32_ptr(context, builder, signature.args[k], args[k], args[k + 1]),  # noqa: E731
                                        _F32x8.as_pointer())
        x = builder.load(ptr(0), align=4)
        y = builder.load(ptr(2), align=4)
        e = _v_expf_ir(builder, builder.fsub(_c8(0.0), x))
        silu = builder.fdiv(x, builder.fadd(_c8(1.0), e))
        builder.store(builder.fmul(silu, y), ptr(4), align=4)
        return context.get_dummy_value()

    return sig, codegen


def _q4k_codegen(ntok, amx=False, mode="gemv"):
    """ggml_gemv_q4_K_8x8_q8_K's arithmetic for one row (the order ggml uses for Q4_K weights it
    repacked at load time) against ntok q8_K rows. Arguments (w, q_0.., d_0.., bsums_0.., nb, bs).
    Per super-block the integer sums are exact (maddubs on the nibbles, madd with the 6-bit
    scales; the mins against the pairs of bsums), then acc = fma(isum, d_w * d_x, acc) and
    acc_min = fma(summ, dmin_w * d_x, acc_min); the result is acc - acc_min.

    amx: the AMX buffer's tinygemm_kernel_vnni order, one accumulator for both:
    acc = fnmadd(summ, dmin_w * d_x, fma(isum, d_w * d_x, acc)).

    mode "gemm": ggml_gemm_q4_K_8x8_q8_K, which takes the first rows of a batch of four or more
    in groups of four: the same two accumulators, but updated for each 64-value quarter of a
    super-block rather than once a block. Mode "tiled": the tiled K-quant matmul (unrepacked
    weights, batches of 8+): res = fnmadd(dmin_w, summ, d_w * isum), acc = fma(res, d_x, acc)."""

    def codegen(context, builder, signature, args):
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        wbase = builder.bitcast(context.make_array(signature.args[0])(context, builder, args[0]).data, i8p)
        arr = lambda k: context.make_array(signature.args[k])(context, builder, args[k]).data  # noqa: E731
        qb = [builder.bitcast(arr(1 + t), i8p) for t in range(ntok)]
        db = [arr(1 + ntok + t) for t in range(ntok)]
        bb = [arr(1 + 2 * ntok + t) for t in range(ntok)]
        nb, bs = args[1 + 3 * ntok], args[2 + 3 * ntok]
        fma1 = builder.module.declare_intrinsic("llvm.fma.f32", fnty=ir.FunctionType(_F32, [_F32] * 3))
        c64 = lambda v: ir.Constant(_I64, v)  # noqa: E731
        c32 = lambda v: ir.Constant(i32, v)  # noqa: E731
        I16x8 = ir.VectorType(ir.IntType(16), 8)
        I32x16 = ir.VectorType(i32, 16)
        I32x2 = ir.VectorType(i32, 2)
        I8x8 = ir.VectorType(ir.IntType(8), 8)

        def bytes8(a, b):  # two i32 words -> eight bytes -> eight i16
            v = builder.insert_element(builder.insert_element(ir.Constant(I32x2, ir.Undefined), a, c32(0)), b, c32(1))
            return builder.zext(builder.bitcast(v, I8x8), I16x8)

        entry = builder.basic_block
        loop = builder.append_basic_block("q4k.loop")
        body = builder.append_basic_block("q4k.body")
        done = builder.append_basic_block("q4k.done")
        builder.branch(loop)
        builder.position_at_end(loop)
        i = builder.phi(_I64)
        i.add_incoming(c64(0), entry)
        accs, mins = [], []
        for t in range(ntok):
            a = builder.phi(_F32)
            a.add_incoming(ir.Constant(_F32, 0.0), entry)
            m = builder.phi(_F32)
            m.add_incoming(ir.Constant(_F32, 0.0), entry)
            accs.append(a)
            mins.append(m)
        builder.cbranch(builder.icmp_signed("<", i, nb), body, done)

        builder.position_at_end(body)
        o = builder.mul(i, bs)
        blk = builder.gep(wbase, [o])
        d_w = _f16_at(builder, blk, c64(0))
        dmin_w = _f16_at(builder, blk, c64(2))
        u = [builder.load(builder.bitcast(builder.gep(blk, [c64(4 + 4 * k)]), i32.as_pointer()), align=1)
             for k in range(3)]
        k1, k2, k3 = c32(0x3F3F3F3F), c32(0x0F0F0F0F), c32(0x03030303)
        sc_hi = builder.or_(builder.and_(u[2], k2), builder.shl(builder.and_(builder.lshr(u[0], c32(6)), k3), c32(4)))
        m_hi = builder.or_(builder.and_(builder.lshr(u[2], c32(4)), k2),
                           builder.shl(builder.and_(builder.lshr(u[1], c32(6)), k3), c32(4)))
        scales = bytes8(builder.and_(u[0], k1), sc_hi)  # get_scale_min_k4, j = 0..7
        mins8 = builder.zext(bytes8(builder.and_(u[1], k1), m_hi), _I32x8)
        splat = [builder.shuffle_vector(scales, scales, ir.Constant(ir.VectorType(i32, 16), [k] * 16))
                 for k in range(8)]
        lo, hi = [], []
        for j in range(4):
            x = _load(builder, builder.gep(blk, [c64(16 + 32 * j)]), _I8x32)
            lo.append(builder.and_(x, ir.Constant(_I8x32, [15] * 32)))
            hi.append(builder.lshr(x, ir.Constant(_I8x32, [4] * 32)))
        for t in range(ntok):
            qx = builder.gep(qb[t], [builder.mul(i, c64(256))])
            bsum = builder.load(builder.bitcast(builder.gep(bb[t], [builder.mul(i, c64(16))]), I32x16.as_pointer()), align=4)
            pairs = builder.add(builder.shuffle_vector(bsum, bsum, ir.Constant(ir.VectorType(i32, 8), list(range(0, 16, 2)))),
                                builder.shuffle_vector(bsum, bsum, ir.Constant(ir.VectorType(i32, 8), list(range(1, 16, 2)))))
            mprod = builder.mul(pairs, mins8)
            dy = builder.load(builder.gep(db[t], [i]), align=4)
            s32 = ir.Constant(_I32x8, [0] * 8)
            acc, mn = accs[t], mins[t]
            for j in range(4):
                q32 = ir.Constant(_I32x8, [0] * 8) if mode == "gemm" else s32
                for half, xs in ((0, lo[j]), (1, hi[j])):
                    y = _load(builder, builder.gep(qx, [c64(64 * j + 32 * half)]), _I8x32)
                    p16 = _x86(builder, "llvm.x86.avx2.pmadd.ub.sw", _I16x16, [xs, y])
                    q32 = builder.add(q32, _x86(builder, "llvm.x86.avx2.pmadd.wd", _I32x8, [p16, splat[2 * j + half]]))
                if mode == "gemm":  # this quarter's sums, scaled into the accumulators now
                    m2 = builder.add(builder.extract_element(mprod, c32(2 * j)), builder.extract_element(mprod, c32(2 * j + 1)))
                    acc = builder.call(fma1, [builder.sitofp(_isum8_ir(builder, q32), _F32), builder.fmul(d_w, dy), acc])
                    mn = builder.call(fma1, [builder.sitofp(m2, _F32), builder.fmul(dmin_w, dy), mn])
                else:
                    s32 = q32
            if mode == "gemm":
                accs[t].add_incoming(acc, body)
                mins[t].add_incoming(mn, body)
                continue
            isum = _isum8_ir(builder, s32)
            summ = _isum8_ir(builder, mprod)
            if mode == "tiled":
                res = builder.fmul(d_w, builder.sitofp(isum, _F32))
                res = builder.call(fma1, [builder.fneg(dmin_w), builder.sitofp(summ, _F32), res])
                accs[t].add_incoming(builder.call(fma1, [res, dy, accs[t]]), body)
                mins[t].add_incoming(mins[t], body)
                continue
            acc = builder.call(fma1, [builder.sitofp(isum, _F32), builder.fmul(d_w, dy), accs[t]])
            if amx:
                acc = builder.call(fma1, [builder.fneg(builder.sitofp(summ, _F32)), builder.fmul(dmin_w, dy), acc])
                mins[t].add_incoming(mins[t], body)
            else:
                mins[t].add_incoming(builder.call(fma1, [builder.sitofp(summ, _F32), builder.fmul(dmin_w, dy), mins[t]]),
                                     body)
            accs[t].add_incoming(acc, body)
        i.add_incoming(builder.add(i, c64(1)), body)
        builder.branch(loop)

        builder.position_at_end(done)
        outs = [accs[t] if (amx or mode == "tiled") else builder.fsub(accs[t], mins[t]) for t in range(ntok)]
        return _pack(context, builder, signature, outs)

    return codegen


row_dot_q4_K, row_dot2_q4_K, row_dot4_q4_K = _row_dot_family(
    _q4k_codegen, "A Q4_K row in ggml_gemv_q4_K_8x8_q8_K's order (weights ggml repacks at load time)")
_, _, row_dot4_q4_K_gemm = _row_dot_family(
    lambda n: _q4k_codegen(n, mode="gemm"), "A Q4_K row in ggml_gemm_q4_K_8x8_q8_K's order (batches of 4+)")
row_dot_q4_K_tiled, _, row_dot4_q4_K_tiled = _row_dot_family(
    lambda n: _q4k_codegen(n, mode="tiled"), "A Q4_K row in the tiled K-quant matmul's order (8+ rows, not repacked)")
row_dot_q4_K_amx, row_dot2_q4_K_amx, row_dot4_q4_K_amx = _row_dot_family(
    lambda n: _q4k_codegen(n, amx=True), "A Q4_K row in the AMX buffer's tinygemm_kernel_vnni order")


# -- flash attention's fp16 accumulator ---------------------------------------------------------
#
# ggml_compute_forward_flash_attn_ext_f16 keeps V·softmax in fp16 (VKQ16) when V is F16: each
# key's ggml_vec_mad_f16 loads eight halves, fuses v*x + y in float32 and stores the halves back
# (vcvtps2ph, nearest even). Element by element, so AVX2's eight lanes and AVX-512's sixteen
# give the same bits. The accumulator travels here as float32 values that are fp16-exact.

@intrinsic
def mad8_to_f16(typingctx, y, yo, x, xo, v):
    """y[yo:yo+8] = fp16(fma(x[xo:xo+8], v, y[yo:yo+8])), kept as float32: ggml_vec_mad_f16 on
    eight lanes. y float32 (fp16-exact values), x fp16 bits; flat offsets into C-contiguous
    arrays."""
    sig = types.void(y, types.int64, x, types.int64, types.float32)

    def codegen(context, builder, signature, args):
        yp = builder.bitcast(_f32_ptr(context, builder, signature.args[0], args[0], args[1]), _F32x8.as_pointer())
        xp = builder.bitcast(_ptr(context, builder, signature.args[2], args[2], args[3]), _F16x8.as_pointer())
        fma8 = builder.module.declare_intrinsic("llvm.fma.v8f32", fnty=ir.FunctionType(_F32x8, [_F32x8] * 3))
        xv = builder.fpext(builder.load(xp, align=2), _F32x8)
        r = builder.call(fma8, [xv, _splat(builder, args[4], _F32x8), builder.load(yp, align=4)])
        builder.store(builder.fpext(builder.fptrunc(r, _F16x8), _F32x8), yp, align=4)
        return context.get_dummy_value()

    return sig, codegen
