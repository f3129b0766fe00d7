/* dtype.c - element types and conversions (bf16/fp16 <-> float, RNE). */
#include "internal.h"

#include <math.h>
#include <string.h>
#include <strings.h>

size_t fa4cp_dtype_size(fa4cp_dtype dtype)
{
    switch (dtype) {
    case FA4CP_BF16:
    case FA4CP_FP16: return 2;
    case FA4CP_FP32: return 4;
    case FA4CP_FP64: return 8;
    }
    return 0;
}

const char *fa4cp_dtype_name(fa4cp_dtype dtype)
{
    switch (dtype) {
    case FA4CP_BF16: return "bf16";
    case FA4CP_FP16: return "fp16";
    case FA4CP_FP32: return "fp32";
    case FA4CP_FP64: return "fp64";
    }
    return "?";
}

fa4cp_status fa4cp_dtype_parse(const char *name, fa4cp_dtype *out)
{
    static const struct {
        const char *name;
        fa4cp_dtype dtype;
    } names[] = {{"bf16", FA4CP_BF16}, {"bfloat16", FA4CP_BF16}, {"fp16", FA4CP_FP16},
                 {"float16", FA4CP_FP16}, {"half", FA4CP_FP16}, {"fp32", FA4CP_FP32},
                 {"float32", FA4CP_FP32}, {"fp64", FA4CP_FP64}, {"float64", FA4CP_FP64}};
    for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(name, names[i].name) == 0) {
            *out = names[i].dtype;
            return FA4CP_OK;
        }
    return fa4cp_set_error(FA4CP_ERR_INVALID, "unknown dtype '%s': expected bf16, fp16, fp32 or fp64",
                           name ? name : "(null)");
}

fa4cp_dtype fa4cp_lse_dtype(fa4cp_dtype dtype) { return dtype == FA4CP_FP64 ? FA4CP_FP64 : FA4CP_FP32; }

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t fa4cp_float_to_bf16(float f)
{
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet and NaN */
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float fa4cp_bf16_to_float(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t fa4cp_float_to_fp16(float f)
{
    uint32_t u = f2u(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u);
    if (absu >= 0x477ff000u) /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00u);
    if (absu < 0x38800000u) { /* subnormal or zero in fp16 */
        /* value * 2^24 rounded to nearest even gives the subnormal mantissa */
        float a = u2f(absu) * 16777216.0f;
        float r = nearbyintf(a);
        return (uint16_t)(sign | (uint32_t)r);
    }
    uint32_t mant = absu & 0x7fffffu;
    uint32_t exp = (absu >> 23) - 127 + 15;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++;
    return (uint16_t)(sign | h);
}

float fa4cp_fp16_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        float f = ldexpf((float)mant, -24);
        return sign ? -f : f;
    }
    if (exp == 31)
        return u2f(sign | 0x7f800000u | (mant << 13));
    return u2f(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

double fa4cp_load(fa4cp_dtype dtype, const void *base, size_t i)
{
    switch (dtype) {
    case FA4CP_BF16: return fa4cp_bf16_to_float(((const uint16_t *)base)[i]);
    case FA4CP_FP16: return fa4cp_fp16_to_float(((const uint16_t *)base)[i]);
    case FA4CP_FP32: return ((const float *)base)[i];
    case FA4CP_FP64: return ((const double *)base)[i];
    }
    return NAN;
}

void fa4cp_store(fa4cp_dtype dtype, void *base, size_t i, double v)
{
    switch (dtype) {
    case FA4CP_BF16: ((uint16_t *)base)[i] = fa4cp_float_to_bf16((float)v); break;
    case FA4CP_FP16: ((uint16_t *)base)[i] = fa4cp_float_to_fp16((float)v); break;
    case FA4CP_FP32: ((float *)base)[i] = (float)v; break;
    case FA4CP_FP64: ((double *)base)[i] = v; break;
    }
}
