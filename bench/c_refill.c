/* C reference escape-time kernel with fractally/kernel.py's strategy: vectors of four float64
 * lanes, five vectors in flight, escaped lanes frozen, every BLOCK steps each finished vector
 * written out and refilled with the next four pixels while the others go on.
 *
 * Bench only: bench/simd.py compiles it at run time, next to the lockstep reference
 * (bench/c_kernel.c), with
 *
 *     gcc -O3 -march=native -ffp-contract=off -fopenmp -shared -fPIC c_refill.c -o libcrefill.so
 *
 * and checks its counts against ours bit for bit. Two instruction sets, chosen by the compiler's
 * target (-march):
 *
 *   AVX2 (no __AVX512VL__): __m256d; the test is a compare into a vector mask, and the frozen
 *       lanes keep their z through blendv, the count adds (mask AND 1.0): what numba's SLP
 *       vectoriser emits for _step4 on an AVX2 target;
 *   AVX-512 (__AVX512F__ and __AVX512VL__): still __m256d (four lanes, as ours), but the test is a
 *       compare into a k-mask and x, y and the count take masked adds (vaddpd ymm{k}): what numba
 *       emits for _step4 on an AVX-512 target ("AVX-512's masked adds" in kernel.py's docstring).
 *
 * Arithmetic is docs/api.md's exact rule, one IEEE float64 operation per intrinsic, no FMA
 * (-ffp-contract=off; simd.py checks the assembly):
 *   |z|^2 = x*x + y*y,   go = |z|^2 <= R^2,   x' = (x*x - y*y) + c.re,   y' = (x + x)*y + c.im,
 * and a lane whose go is false keeps its z and its count: after max_iter steps (or once all four
 * lanes of a vector are frozen) the count is the number of steps with |z|^2 <= R^2, as in ours and
 * in the lockstep reference.
 *
 * Work split: the window's rows are cut into strips of at most STRIP_PIXELS pixels (as ours);
 * each strip is one refill loop; OpenMP hands strips to threads (dynamic). Columns are padded to a
 * multiple of four by repeating the last one; padding lanes are never stored.
 */
#include <immintrin.h>

#include "c_step.h"
#include <stdint.h>
#include <stdlib.h>
#include <omp.h>

#define LANES 4
#define BLOCK 8
#define STRIP_PIXELS (1 << 16)

#if defined(__AVX512F__) && defined(__AVX512VL__)
#define ISA "avx512vl"
/* One step, masked adds (AVX-512VL on 256-bit vectors). */
#define STEP(X, Y, N, CX, CY)                                                          \
    do {                                                                               \
        __m256d xx = _mm256_mul_pd(X, X), yy = _mm256_mul_pd(Y, Y);                    \
        __mmask8 go = _mm256_cmp_pd_mask(_mm256_add_pd(xx, yy), r2, _CMP_LE_OQ);       \
        __m256d ty = _mm256_mul_pd(_mm256_add_pd(X, X), Y);                            \
        X = _mm256_mask_add_pd(X, go, _mm256_sub_pd(xx, yy), CX);                      \
        Y = _mm256_mask_add_pd(Y, go, ty, CY);                                         \
        N = _mm256_mask_add_pd(N, go, N, one);                                         \
    } while (0)
#else
#define ISA "avx2"
/* One step, compare + blendv (AVX2). */
#define STEP STEP_AVX2
#endif

const char *refill_isa(void) { return ISA; }

static inline double pixel_x(double center_x, double scale, int64_t width, int64_t j) {
    return center_x + ((((double)j + 0.5) - (double)width / 2.0) * scale) / (double)width;
}

static inline double pixel_y(double center_y, double scale, int64_t width, int64_t height, int64_t i) {
    return center_y - ((((double)i + 0.5) - (double)height / 2.0) * scale) / (double)width;
}

/* One vector's state: where its results go (-1: idle), z, c, count, steps since loaded. */
typedef struct {
    int64_t at;
    __m256d x, y, cx, cy, n;
    int64_t s;
} vec;

/* Load the four pixels at (row, col..col+3) of the strip (as _load4); past the last row: idle. */
static inline void load(vec *v, int64_t row, int64_t col, int64_t rows, int64_t stride, const double *px,
                        const double *py, int julia, double c_re, double c_im) {
    v->n = _mm256_setzero_pd();
    v->s = 0;
    if (row >= rows) {
        v->at = -1;
        v->x = v->y = _mm256_set1_pd(__builtin_inf());
        v->cx = v->cy = _mm256_setzero_pd();
        return;
    }
    v->at = row * stride + col;
    __m256d p = _mm256_loadu_pd(px + col), q = _mm256_set1_pd(py[row]);
    if (julia) {
        v->x = p; v->y = q;
        v->cx = _mm256_set1_pd(c_re); v->cy = _mm256_set1_pd(c_im);
    } else {
        v->x = v->y = _mm256_setzero_pd();
        v->cx = p; v->cy = q;
    }
}

static inline void next(int64_t *row, int64_t *col, int64_t stride) {
    if (*col + LANES < stride) *col += LANES; else { *row += 1; *col = 0; }
}

/* A finished vector: all lanes frozen (|z|^2 > R^2) or max_iter steps taken. */
static inline int finished(const vec *v, __m256d r2, int64_t max_iter) {
    if (v->s >= max_iter) return 1;
    __m256d m = _mm256_add_pd(_mm256_mul_pd(v->x, v->x), _mm256_mul_pd(v->y, v->y));
    return _mm256_movemask_pd(_mm256_cmp_pd(m, r2, _CMP_LE_OQ)) == 0;
}

/* The refill loop over one strip: rows [0, rows) of px (stride columns) and py; counts into nbuf. */
static void strip(int julia, double c_re, double c_im, const double *px, const double *py, int64_t rows,
                  int64_t stride, int64_t max_iter, double r2_scalar, double *nbuf) {
    const __m256d r2 = _mm256_set1_pd(r2_scalar);
    const __m256d one = _mm256_set1_pd(1.0);
    vec v[5];
    int64_t row = 0, col = 0;
    for (int k = 0; k < 5; ++k) {
        load(&v[k], row, col, rows, stride, px, py, julia, c_re, c_im);
        next(&row, &col, stride);
    }
    /* z, c and counts in locals (registers) for the hot loop */
    __m256d xa = v[0].x, ya = v[0].y, na = v[0].n, xb = v[1].x, yb = v[1].y, nb = v[1].n,
            xc = v[2].x, yc = v[2].y, nc = v[2].n, xd = v[3].x, yd = v[3].y, nd = v[3].n,
            xe = v[4].x, ye = v[4].y, ne = v[4].n;
    for (;;) {
        int64_t k = BLOCK;
        int any = 0;
        for (int i = 0; i < 5; ++i)
            if (v[i].at >= 0) { any = 1; if (max_iter - v[i].s < k) k = max_iter - v[i].s; }
        if (!any) break;
        __m256d ca = v[0].cx, da = v[0].cy, cb = v[1].cx, db = v[1].cy, cc = v[2].cx, dc = v[2].cy,
                cd = v[3].cx, dd = v[3].cy, ce = v[4].cx, de = v[4].cy;
        for (int64_t t = 0; t < k; ++t) {  /* the hot loop: 5 independent vectors */
            STEP(xa, ya, na, ca, da);
            STEP(xb, yb, nb, cb, db);
            STEP(xc, yc, nc, cc, dc);
            STEP(xd, yd, nd, cd, dd);
            STEP(xe, ye, ne, ce, de);
        }
        v[0].x = xa; v[0].y = ya; v[0].n = na; v[1].x = xb; v[1].y = yb; v[1].n = nb;
        v[2].x = xc; v[2].y = yc; v[2].n = nc; v[3].x = xd; v[3].y = yd; v[3].n = nd;
        v[4].x = xe; v[4].y = ye; v[4].n = ne;
        for (int i = 0; i < 5; ++i) {
            v[i].s += k;
            if (v[i].at >= 0 && finished(&v[i], r2, max_iter)) {
                _mm256_storeu_pd(nbuf + v[i].at, v[i].n);
                load(&v[i], row, col, rows, stride, px, py, julia, c_re, c_im);
                next(&row, &col, stride);
            }
        }
        xa = v[0].x; ya = v[0].y; na = v[0].n; xb = v[1].x; yb = v[1].y; nb = v[1].n;
        xc = v[2].x; yc = v[2].y; nc = v[2].n; xd = v[3].x; yd = v[3].y; nd = v[3].n;
        xe = v[4].x; ye = v[4].y; ne = v[4].n;
    }
}

/* Fill counts[rows * cols] (row-major) for the window at (row0, col0) of the image; the same
 * signature as escape_counts in c_kernel.c. */
void escape_counts_refill(int julia, double c_re, double c_im, double center_x, double center_y,
                          double scale, int64_t width, int64_t height, int64_t max_iter,
                          double escape_radius, int64_t row0, int64_t col0, int64_t rows, int64_t cols,
                          uint32_t *counts, int threads) {
    const double r2 = escape_radius * escape_radius;
    const int64_t stride = (cols + LANES - 1) / LANES * LANES;
    const int64_t last = col0 + cols - 1;
    double *px = malloc(stride * sizeof(double)), *py = malloc(rows * sizeof(double));
    for (int64_t j = 0; j < stride; ++j)
        px[j] = pixel_x(center_x, scale, width, col0 + j < last ? col0 + j : last);
    for (int64_t i = 0; i < rows; ++i) py[i] = pixel_y(center_y, scale, width, height, row0 + i);
    int64_t strip_rows = STRIP_PIXELS / stride > 0 ? STRIP_PIXELS / stride : 1;
    int64_t strips = (rows + strip_rows - 1) / strip_rows;
    #pragma omp parallel num_threads(threads)
    {
        double *nbuf = malloc(strip_rows * stride * sizeof(double));
        #pragma omp for schedule(dynamic, 1)
        for (int64_t s = 0; s < strips; ++s) {
            int64_t r0 = s * strip_rows, h = rows - r0 < strip_rows ? rows - r0 : strip_rows;
            strip(julia, c_re, c_im, px, py + r0, h, stride, max_iter, r2, nbuf);
            for (int64_t i = 0; i < h; ++i)
                for (int64_t j = 0; j < cols; ++j)
                    counts[(r0 + i) * cols + j] = (uint32_t)nbuf[i * stride + j];
        }
        free(nbuf);
    }
    free(px);
    free(py);
}
