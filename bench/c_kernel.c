/* C reference escape-time kernel: AVX2 intrinsics, four vectors (16 pixels) in flight.
 *
 * Bench only: bench/simd.py compiles it at run time into a temporary folder with
 *
 *     gcc -O3 -march=native -ffp-contract=off -fopenmp -shared -fPIC c_kernel.c -o libckernel.so
 *
 * and calls it through ctypes. The service never uses it; it is the yardstick that
 * fractally/kernel.py is measured against.
 *
 * Arithmetic is docs/api.md's exact rule, one IEEE float64 operation per intrinsic:
 *   pixel centre  x = center_x + ((j + 0.5 - width / 2) * scale) / width   (global j)
 *                 y = center_y - ((i + 0.5 - height / 2) * scale) / width  (global i)
 *   |z|^2 = x*x + y*y,   x' = (x*x - y*y) + c.re,   y' = (2*x)*y + c.im.
 * Multiplies and adds are separate intrinsics, and -ffp-contract=off stops gcc from
 * fusing them into FMA (bench/simd.py also checks the assembly for vfmadd).
 *
 * Per row, the pixels go in groups of 16 = four __m256d vectors of four lanes, each
 * vector an independent dependency chain, so the multiply/add latency of one is
 * hidden behind the other three. A lane is never frozen: an `active` mask per vector
 * is ANDed with the bailout test every step and the count adds the mask (all-ones
 * = -1 as an integer, so count -= mask). An escaped lane keeps iterating on garbage
 * (it may overflow to inf or NaN, which compare false), so it can never come back.
 * The group stops when no lane of the four vectors is active, or at max_iter.
 * Tail lanes past the window's right edge repeat its last pixel and are not stored.
 *
 * Rows are shared among OpenMP threads (dynamic schedule: rows differ in cost).
 */
#include <immintrin.h>
#include <stdint.h>
#include <omp.h>

#define LANES 16

static inline double pixel_x(double center_x, double scale, int64_t width, int64_t j) {
    return center_x + ((((double)j + 0.5) - (double)width / 2.0) * scale) / (double)width;
}

static inline double pixel_y(double center_y, double scale, int64_t width, int64_t height, int64_t i) {
    return center_y - ((((double)i + 0.5) - (double)height / 2.0) * scale) / (double)width;
}

/* One step of four vectors. ACT: still iterating; N: counts (int64 lanes). */
#define STEP(X, Y, CX, CY, ACT, N)                                                    \
    do {                                                                              \
        __m256d xx = _mm256_mul_pd(X, X);                                             \
        __m256d yy = _mm256_mul_pd(Y, Y);                                             \
        ACT = _mm256_and_pd(ACT, _mm256_cmp_pd(_mm256_add_pd(xx, yy), r2, _CMP_LE_OQ)); \
        N = _mm256_sub_epi64(N, _mm256_castpd_si256(ACT));                            \
        __m256d ny = _mm256_add_pd(_mm256_mul_pd(_mm256_mul_pd(two, X), Y), CY);       \
        X = _mm256_add_pd(_mm256_sub_pd(xx, yy), CX);                                 \
        Y = ny;                                                                       \
    } while (0)

/* Fill counts[rows * cols] (row-major) for the window at (row0, col0) of the image. */
void escape_counts(int julia, double c_re, double c_im, double center_x, double center_y,
                   double scale, int64_t width, int64_t height, int64_t max_iter,
                   double escape_radius, int64_t row0, int64_t col0, int64_t rows, int64_t cols,
                   uint32_t *counts, int threads) {
    const double r2_scalar = escape_radius * escape_radius;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t ii = 0; ii < rows; ++ii) {
        const __m256d r2 = _mm256_set1_pd(r2_scalar);
        const __m256d two = _mm256_set1_pd(2.0);
        const double py = pixel_y(center_y, scale, width, height, row0 + ii);
        const int64_t last = col0 + cols - 1;
        for (int64_t start = 0; start < cols; start += LANES) {
            double p[LANES];
            for (int k = 0; k < LANES; ++k) {
                int64_t j = col0 + start + k;
                p[k] = pixel_x(center_x, scale, width, j < last ? j : last);
            }
            __m256d x0, x1, x2, x3, y0, y1, y2, y3, cx0, cx1, cx2, cx3, cy0, cy1, cy2, cy3;
            __m256d vp0 = _mm256_loadu_pd(p), vp1 = _mm256_loadu_pd(p + 4);
            __m256d vp2 = _mm256_loadu_pd(p + 8), vp3 = _mm256_loadu_pd(p + 12);
            __m256d vpy = _mm256_set1_pd(py);
            if (julia) {
                x0 = vp0; x1 = vp1; x2 = vp2; x3 = vp3;
                y0 = y1 = y2 = y3 = vpy;
                cx0 = cx1 = cx2 = cx3 = _mm256_set1_pd(c_re);
                cy0 = cy1 = cy2 = cy3 = _mm256_set1_pd(c_im);
            } else {
                x0 = x1 = x2 = x3 = _mm256_setzero_pd();
                y0 = y1 = y2 = y3 = _mm256_setzero_pd();
                cx0 = vp0; cx1 = vp1; cx2 = vp2; cx3 = vp3;
                cy0 = cy1 = cy2 = cy3 = vpy;
            }
            __m256d a0, a1, a2, a3;
            a0 = a1 = a2 = a3 = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
            __m256i n0 = _mm256_setzero_si256(), n1 = n0, n2 = n0, n3 = n0;
            for (int64_t it = 0; it < max_iter; ++it) {
                STEP(x0, y0, cx0, cy0, a0, n0);
                STEP(x1, y1, cx1, cy1, a1, n1);
                STEP(x2, y2, cx2, cy2, a2, n2);
                STEP(x3, y3, cx3, cy3, a3, n3);
                __m256d any = _mm256_or_pd(_mm256_or_pd(a0, a1), _mm256_or_pd(a2, a3));
                if (_mm256_testz_pd(any, any)) break;  /* sign bits: all lanes done */
            }
            int64_t n[LANES];
            _mm256_storeu_si256((__m256i *)n, n0);
            _mm256_storeu_si256((__m256i *)(n + 4), n1);
            _mm256_storeu_si256((__m256i *)(n + 8), n2);
            _mm256_storeu_si256((__m256i *)(n + 12), n3);
            int64_t m = cols - start < LANES ? cols - start : LANES;
            uint32_t *out = counts + ii * cols + start;
            for (int64_t k = 0; k < m; ++k) out[k] = (uint32_t)n[k];
        }
    }
}
