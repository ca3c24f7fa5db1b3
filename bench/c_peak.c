/* Probes for the FP issue limit of this core (bench/simd.py --peak builds and runs them).
 *
 *   clock_probe(n):  n iterations of 8 dependent integer adds (1 cycle of latency each): its time
 *                    is 8n cycles, which gives the clock the core really ran at;
 *   rule_probeV(n):  n steps of docs/api.md's rule on V independent __m256d vectors with nothing
 *                    data-dependent (no branch, no freezing; counts as a masked add): per vector
 *                    and step 3 mul, 5 add/sub, 1 compare, 1 and + 1 add for the count: as close to
 *                    the rule's bare arithmetic as vector code gets, so its rate is the most lane-steps
 *                    a second this core can issue for the rule;
 *   best_probeV(n):  the rule balanced over the pipes (x + x as 2*x, an integer count): 4 mul,
 *                    5 add/cmp per vector step, the fewest cycles the rule's arithmetic can take;
 *   ours_probeV(n):  the same with our kernel's step (bench/c_refill.c's AVX2 STEP: 2 blendv more,
 *                    escaped lanes frozen): the most our instruction mix can issue.
 *
 * The vectors start at z * (k + 1) with z = 0 at run time: all zero (no overflow, no subnormals),
 * but the compiler cannot see that they are equal and fold them into one (it did with equal starts).
 * With enough vectors the 3-cycle latencies of the chains are hidden and only issue throughput
 * counts. Built with the same flags as the references (-O3 -march=native -ffp-contract=off).
 */
#include <immintrin.h>

#include "c_step.h"
#include <stdint.h>

void clock_probe(int64_t n, int64_t *out) {
    int64_t a = 0;
    for (int64_t i = 0; i < n; ++i)
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                         "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(a));
    *out = a;
}

#define RULE(X, Y, N, CX, CY)                                                          \
    do {                                                                               \
        __m256d xx = _mm256_mul_pd(X, X), yy = _mm256_mul_pd(Y, Y);                    \
        __m256d go = _mm256_cmp_pd(_mm256_add_pd(xx, yy), r2, _CMP_LE_OQ);             \
        N = _mm256_add_pd(N, _mm256_and_pd(go, one));                                  \
        __m256d ny = _mm256_add_pd(_mm256_mul_pd(_mm256_add_pd(X, X), Y), CY);         \
        X = _mm256_add_pd(_mm256_sub_pd(xx, yy), CX);                                  \
        Y = ny;                                                                        \
    } while (0)

/* The rule balanced over the pipe pairs: x + x as 2*x (the same bits) on the multiply pipes and the
 * count as an integer subtract of the mask (kept in a double vector by casts): 4 mul, 5 add/cmp. */
#define BEST(X, Y, N, CX, CY)                                                          \
    do {                                                                               \
        __m256d xx = _mm256_mul_pd(X, X), yy = _mm256_mul_pd(Y, Y);                    \
        __m256d go = _mm256_cmp_pd(_mm256_add_pd(xx, yy), r2, _CMP_LE_OQ);             \
        N = _mm256_castsi256_pd(_mm256_sub_epi64(_mm256_castpd_si256(N), _mm256_castpd_si256(go))); \
        __m256d ny = _mm256_add_pd(_mm256_mul_pd(_mm256_mul_pd(two, X), Y), CY);       \
        X = _mm256_add_pd(_mm256_sub_pd(xx, yy), CX);                                  \
        Y = ny;                                                                        \
    } while (0)

#define OURS STEP_AVX2  /* our step, exactly as c_refill.c runs it */

#define PROBE(NAME, STEP, V)                                                           \
    void NAME(int64_t n, double z, double *out) {                                      \
        const __m256d r2 = _mm256_set1_pd(4.0), one = _mm256_set1_pd(1.0);           \
        const __m256d two = _mm256_set1_pd(2.0);                                       \
        (void)one; (void)two;                                                          \
        __m256d x[V], y[V], cnt[V], c = _mm256_set1_pd(z);                             \
        for (int k = 0; k < V; ++k) /* z = 0: all zero, but distinct to the compiler */ \
            x[k] = y[k] = cnt[k] = _mm256_set1_pd(z * (k + 1));                        \
        for (int64_t i = 0; i < n; ++i) {                                              \
            _Pragma("GCC unroll 16")                                                   \
            for (int k = 0; k < V; ++k) STEP(x[k], y[k], cnt[k], c, c);                \
        }                                                                              \
        __m256d s = _mm256_setzero_pd();                                               \
        for (int k = 0; k < V; ++k) s = _mm256_add_pd(s, _mm256_add_pd(x[k], cnt[k])); \
        double t[4];                                                                   \
        _mm256_storeu_pd(t, s);                                                        \
        *out = t[0] + t[1] + t[2] + t[3];                                              \
    }

/* 3, 4, 5 and 8 vectors: fewer leave latency exposed, more spill registers (16 ymm on AVX2);
 * simd.py takes the fastest of each. */
PROBE(rule_probe3, RULE, 3)
PROBE(rule_probe4, RULE, 4)
PROBE(rule_probe5, RULE, 5)
PROBE(rule_probe8, RULE, 8)
PROBE(best_probe3, BEST, 3)
PROBE(best_probe4, BEST, 4)
PROBE(best_probe5, BEST, 5)
PROBE(best_probe8, BEST, 8)
PROBE(ours_probe3, OURS, 3)
PROBE(ours_probe4, OURS, 4)
PROBE(ours_probe5, OURS, 5)
PROBE(ours_probe8, OURS, 8)


/* Which pipes an instruction shares: 24 instructions an iteration on 12 independent registers
 * (two of each kind alternating), so the rate is issue throughput, not latency. Two kinds that
 * together reach 4 a cycle use different pipes; two that stay at 2 share the same two. */
#define CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11"
#define ADD(r) "vaddpd %%ymm" #r ", %%ymm" #r ", %%ymm" #r "\n\t"
#define MUL(r) "vmulpd %%ymm" #r ", %%ymm" #r ", %%ymm" #r "\n\t"
#define CMP(r) "vcmplepd %%ymm14, %%ymm" #r ", %%ymm" #r "\n\t"
#define BLEND(r) "vblendvpd %%ymm15, %%ymm14, %%ymm" #r ", %%ymm" #r "\n\t"
#define TWELVE(A, B) A(0) B(1) A(2) B(3) A(4) B(5) A(6) B(7) A(8) B(9) A(10) B(11)
#define PIPES(NAME, A, B)                                                              \
    void NAME(int64_t n) {                                                             \
        for (int64_t i = 0; i < n; ++i)                                                \
            __asm__ volatile(TWELVE(A, B) TWELVE(B, A) ::: CLOBBERS);                  \
    }
PIPES(pipes_add, ADD, ADD)
PIPES(pipes_mul, MUL, MUL)
PIPES(pipes_cmp, CMP, CMP)
PIPES(pipes_blend, BLEND, BLEND)
PIPES(pipes_add_mul, ADD, MUL)
PIPES(pipes_add_cmp, ADD, CMP)
PIPES(pipes_mul_cmp, MUL, CMP)
PIPES(pipes_add_blend, ADD, BLEND)
PIPES(pipes_mul_blend, MUL, BLEND)
