/* The escape-time rule's step as our numba kernel compiles it for AVX2 (four lanes; compare + blendv
 * freezes the escaped ones), shared by the C reference with our strategy (c_refill.c) and the issue-limit
 * probe of that very step (c_peak.c), so the probe measures the step the reference runs. Expects
 * `r2` (the squared escape radius) and `one` (1.0) as __m256d in scope; no FMA (-ffp-contract=off). */
#ifndef FRACTALLY_C_STEP_H
#define FRACTALLY_C_STEP_H
#include <immintrin.h>

#define STEP_AVX2(X, Y, N, CX, CY)                                                     \
    do {                                                                               \
        __m256d xx = _mm256_mul_pd(X, X), yy = _mm256_mul_pd(Y, Y);                    \
        __m256d go = _mm256_cmp_pd(_mm256_add_pd(xx, yy), r2, _CMP_LE_OQ);             \
        __m256d nx = _mm256_add_pd(_mm256_sub_pd(xx, yy), CX);                         \
        __m256d ny = _mm256_add_pd(_mm256_mul_pd(_mm256_add_pd(X, X), Y), CY);         \
        X = _mm256_blendv_pd(X, nx, go);                                               \
        Y = _mm256_blendv_pd(Y, ny, go);                                               \
        N = _mm256_add_pd(N, _mm256_and_pd(go, one));                                  \
    } while (0)

#endif
