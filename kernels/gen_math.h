/* gen_math.h - the arithmetic of the counter-based input generator, shared
 * by the host (lib/run/gen.c) and the GPU (kernels/gen.cu, kernels/ref.cu).
 *
 * Every element is a pure function of (seed, tensor, token, head, dim): a
 * splitmix64-style hash of (seed, tensor, token, head) keys the row; one more
 * mixing round per pair of dims gives two 32-bit uniforms, and Box-Muller
 * turns them into two standard normals (cos branch: even dim, sin branch:
 * odd dim).
 *
 * Bit-identical on both sides: the hash is integer arithmetic, and the
 * floating-point part uses only IEEE-754 double +, -, *, / and sqrt, each
 * rounded to nearest, in a fixed order, with no fused multiply-add (the GPU
 * side spells every operation as a _rn intrinsic, the host side switches
 * contraction off).  log and sin/cos are the polynomials below, not libm's
 * or CUDA's (whose last bits differ), so the host can regenerate any row of
 * what the GPU generated, and the GPU reference sees the same inputs as the
 * host oracle.  Accuracy: a few ulp of double, far below the storage dtype.
 *
 * Plain C99 and CUDA C++; no fa4cp types. */
#ifndef FA4CP_GEN_MATH_H
#define FA4CP_GEN_MATH_H

#include <stdint.h>

#if defined(__CUDACC__)
#define GM_FN static __host__ __device__ __forceinline__
#else
#define GM_FN static inline
#endif

#if defined(__CUDA_ARCH__)
#define GM_ADD(a, b) __dadd_rn((a), (b))
#define GM_SUB(a, b) __dsub_rn((a), (b))
#define GM_MUL(a, b) __dmul_rn((a), (b))
#define GM_DIV(a, b) __ddiv_rn((a), (b))
#define GM_SQRT(a) __dsqrt_rn(a)
#define GM_BITS(x) ((uint64_t)__double_as_longlong(x))
#define GM_FROM_BITS(u) __longlong_as_double((long long)(u))
#else
#include <math.h>
#include <string.h>
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__) && !defined(__CUDACC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#define GM_POP_OPTIONS 1
#endif
#define GM_ADD(a, b) ((a) + (b))
#define GM_SUB(a, b) ((a) - (b))
#define GM_MUL(a, b) ((a) * (b))
#define GM_DIV(a, b) ((a) / (b))
#define GM_SQRT(a) sqrt(a)
GM_FN uint64_t gm_bits_(double x)
{
    uint64_t u;
    memcpy(&u, &x, 8);
    return u;
}
GM_FN double gm_from_bits_(uint64_t u)
{
    double x;
    memcpy(&x, &u, 8);
    return x;
}
#define GM_BITS(x) gm_bits_(x)
#define GM_FROM_BITS(u) gm_from_bits_(u)
#endif

GM_FN uint64_t gm_mix(uint64_t z)
{
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ULL;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return z;
}

/* The hash of (seed, tensor, token, head): every element of a row derives
 * from it with one more mixing round per pair of dims. */
GM_FN uint64_t gm_row_key(uint64_t seed, int tensor, int64_t token, int head)
{
    uint64_t h = gm_mix(seed + 0x9e3779b97f4a7c15ULL);
    h = gm_mix(h ^ ((uint64_t)(uint32_t)tensor * 0xd1b54a32d192ed03ULL));
    h = gm_mix(h ^ (uint64_t)token);
    return gm_mix(h ^ ((uint64_t)(uint32_t)head * 0xaf251af3b0f025b5ULL));
}

/* ln x for a normal x > 0: x = 2^e m, m in [sqrt(1/2), sqrt(2)),
 * ln m = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172: the series to s^25. */
GM_FN double gm_log(double x)
{
    uint64_t b = GM_BITS(x);
    int e = (int)((b >> 52) & 0x7ff) - 1023;
    double m = GM_FROM_BITS((b & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);
    if (m > 1.4142135623730951) {
        m = GM_MUL(m, 0.5);
        e += 1;
    }
    double s = GM_DIV(GM_SUB(m, 1.0), GM_ADD(m, 1.0));
    double z = GM_MUL(s, s);
    double p = 0.04;                       /* 1/25 */
    p = GM_ADD(GM_MUL(p, z), 0.043478260869565216); /* 1/23 */
    p = GM_ADD(GM_MUL(p, z), 0.047619047619047616); /* 1/21 */
    p = GM_ADD(GM_MUL(p, z), 0.05263157894736842);  /* 1/19 */
    p = GM_ADD(GM_MUL(p, z), 0.058823529411764705); /* 1/17 */
    p = GM_ADD(GM_MUL(p, z), 0.06666666666666667);  /* 1/15 */
    p = GM_ADD(GM_MUL(p, z), 0.07692307692307693);  /* 1/13 */
    p = GM_ADD(GM_MUL(p, z), 0.09090909090909091);  /* 1/11 */
    p = GM_ADD(GM_MUL(p, z), 0.1111111111111111);   /* 1/9 */
    p = GM_ADD(GM_MUL(p, z), 0.14285714285714285);  /* 1/7 */
    p = GM_ADD(GM_MUL(p, z), 0.2);                  /* 1/5 */
    p = GM_ADD(GM_MUL(p, z), 0.3333333333333333);   /* 1/3 */
    double lm = GM_MUL(GM_MUL(2.0, s), GM_ADD(1.0, GM_MUL(z, p)));
    double de = (double)e;
    /* ln 2 = hi + lo, hi with 24 trailing zero bits: e * hi is exact */
    return GM_ADD(GM_MUL(de, 0.6931471526622772), GM_ADD(GM_MUL(de, 2.7897668064547076e-08), lm));
}

/* sin and cos of t in [0, pi/4]: Taylor to t^17 / t^18. */
GM_FN void gm_sincos_small(double t, double *s, double *c)
{
    double z = GM_MUL(t, t);
    double ps = 2.8114572543455206e-15;                  /* 1/17! */
    ps = GM_SUB(GM_MUL(ps, z), 7.647163731819816e-13);   /* 1/15! */
    ps = GM_ADD(GM_MUL(ps, z), 1.6059043836821613e-10);  /* 1/13! */
    ps = GM_SUB(GM_MUL(ps, z), 2.505210838544172e-08);   /* 1/11! */
    ps = GM_ADD(GM_MUL(ps, z), 2.7557319223985893e-06);  /* 1/9! */
    ps = GM_SUB(GM_MUL(ps, z), 0.0001984126984126984);   /* 1/7! */
    ps = GM_ADD(GM_MUL(ps, z), 0.008333333333333333);    /* 1/5! */
    ps = GM_SUB(GM_MUL(ps, z), 0.16666666666666666);     /* 1/3! */
    *s = GM_ADD(t, GM_MUL(GM_MUL(t, z), ps));
    double pc = -1.5619206968586225e-16;                 /* -1/18! */
    pc = GM_ADD(GM_MUL(pc, z), 4.779477332387385e-14);   /* 1/16! */
    pc = GM_SUB(GM_MUL(pc, z), 1.1470745597729725e-11);  /* 1/14! */
    pc = GM_ADD(GM_MUL(pc, z), 2.08767569878681e-09);    /* 1/12! */
    pc = GM_SUB(GM_MUL(pc, z), 2.755731922398589e-07);   /* 1/10! */
    pc = GM_ADD(GM_MUL(pc, z), 2.48015873015873e-05);    /* 1/8! */
    pc = GM_SUB(GM_MUL(pc, z), 0.001388888888888889);    /* 1/6! */
    pc = GM_ADD(GM_MUL(pc, z), 0.041666666666666664);    /* 1/4! */
    pc = GM_SUB(GM_MUL(pc, z), 0.5);                     /* 1/2! */
    *c = GM_ADD(1.0, GM_MUL(z, pc));
}

/* Box-Muller on the two 32-bit halves of one hash: dims 2p and 2p+1 of a row
 * are r cos(2 pi u2) and r sin(2 pi u2), r = sqrt(-2 ln u1).  The angle is
 * reduced exactly in turns: u2 has 32 fraction bits, so 8 u2 splits into an
 * octant and an exact fraction. */
GM_FN void gm_pair(uint64_t key, int pair, double *even, double *odd)
{
    uint64_t h = gm_mix(key ^ ((uint64_t)(uint32_t)pair * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL));
    double u1 = GM_MUL(GM_ADD((double)(h >> 32), 0.5), 2.3283064365386963e-10); /* 2^-32 */
    uint32_t lo = (uint32_t)(h & 0xffffffffu);
    double r = GM_SQRT(GM_MUL(-2.0, gm_log(u1)));
    int oct = (int)(lo >> 29);                               /* 8 u2 = oct + f */
    double f = GM_MUL((double)(lo & 0x1fffffffu), 1.862645149230957e-09); /* 2^-29 */
    int neg = oct & 1;
    if (neg) {
        f = GM_SUB(1.0, f); /* exact */
        oct += 1;
    }
    double st, ct;
    gm_sincos_small(GM_MUL(f, 0.7853981633974483), &st, &ct);
    if (neg)
        st = -st;
    double cs, sn; /* cos and sin of (oct/2) quarter turns + angle */
    switch ((oct >> 1) & 3) {
    case 0: cs = ct; sn = st; break;
    case 1: cs = -st; sn = ct; break;
    case 2: cs = -ct; sn = -st; break;
    default: cs = st; sn = -ct; break;
    }
    *even = GM_MUL(r, cs);
    *odd = GM_MUL(r, sn);
}

/* float -> bf16 bits, round to nearest even (NaN stays a quiet NaN) */
GM_FN uint16_t gm_float_to_bf16(float f)
{
    uint32_t u;
#if defined(__CUDA_ARCH__)
    u = (uint32_t)__float_as_uint(f);
#else
    memcpy(&u, &f, 4);
#endif
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

#if defined(GM_POP_OPTIONS)
#pragma GCC pop_options
#undef GM_POP_OPTIONS
#endif

#endif
