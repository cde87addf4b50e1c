/* Instruction throughput of the products the f32 and int8 tiles are made
 * of, on this CPU: 256-bit FMA (the f32 tile, 8 multiply-adds each)
 * against vpmaddwd + vpaddd (the AVX2 int8 tile, 16 multiply-adds per
 * pair) and vpmaddubsw + vpaddd (what a saturating int8 kernel such as
 * MLAS's on AVX2 builds on), independent accumulators as in the tiles.
 *
 *   gcc -O3 -funroll-loops -mavx2 -mfma scripts/model/simd_throughput.c -o /tmp/simd && /tmp/simd
 *
 * On the AVX2 VM of session 12 (BENCHMARKS.md): FMA 1.96-2.25 G/s,
 * vpmaddwd + vpaddd 0.84-1.04 G/s, vpmaddubsw + vpaddd 0.79-1.00 G/s: the
 * integer products issue at half the FMA rate, so an exact int8 tile
 * (16 multiply-adds per vpmaddwd) does what the f32 tile does (8 per FMA)
 * per second, and only a saturating one (32 per vpmaddubsw) could do more.
 * Run it a few times: on a shared VM one run can be off by 1.5x. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    const long n = 200000000;
    __m256 f[12];
    __m256 x = _mm256_set1_ps(1.0001f), y = _mm256_set1_ps(0.9999f);
    for (int i = 0; i < 12; i++) f[i] = _mm256_set1_ps((float)i);
    double t0 = now();
    for (long r = 0; r < n; r++) {
        __asm__ volatile("" : "+x"(x), "+x"(y));
        for (int i = 0; i < 12; i++) f[i] = _mm256_fmadd_ps(f[i], x, y);
    }
    double t1 = now();
    float fs = 0;
    for (int i = 0; i < 12; i++) fs += f[i][0];
    printf("vfmadd231ps ymm:          %.2f G/s (%g)\n", n * 12 / (t1 - t0) / 1e9, fs);

    /* 8 accumulators, each the product of its own pair of inputs (4 x 2
     * vectors, so everything stays in the 16 registers; a product shared
     * by two accumulators would be computed once). */
    __m256i a[8], u[4], w[2];
    for (int i = 0; i < 8; i++) a[i] = _mm256_set1_epi32(i);
    for (int i = 0; i < 4; i++) u[i] = _mm256_set1_epi16((short)(i + 1));
    for (int i = 0; i < 2; i++) w[i] = _mm256_set1_epi16((short)(i + 7));
    double t2 = now();
    for (long r = 0; r < n; r++) {
        /* The inputs "change" every iteration, so the products cannot be
         * hoisted out of the loop (they were, in a first version). */
        __asm__ volatile("" : "+x"(u[0]), "+x"(u[1]), "+x"(u[2]), "+x"(u[3]), "+x"(w[0]), "+x"(w[1]));
        for (int i = 0; i < 8; i++) a[i] = _mm256_add_epi32(a[i], _mm256_madd_epi16(u[i % 4], w[i / 4]));
    }
    double t3 = now();
    int s = 0;
    for (int i = 0; i < 8; i++) s += _mm256_extract_epi32(a[i], 0);
    printf("vpmaddwd + vpaddd ymm:    %.2f G/s (%d)\n", n * 8 / (t3 - t2) / 1e9, s);

    t2 = now();
    for (long r = 0; r < n; r++) {
        __asm__ volatile("" : "+x"(u[0]), "+x"(u[1]), "+x"(u[2]), "+x"(u[3]), "+x"(w[0]), "+x"(w[1]));
        for (int i = 0; i < 8; i++) a[i] = _mm256_add_epi32(a[i], _mm256_maddubs_epi16(u[i % 4], w[i / 4]));
    }
    t3 = now();
    s = 0;
    for (int i = 0; i < 8; i++) s += _mm256_extract_epi32(a[i], 0);
    printf("vpmaddubsw + vpaddd ymm:  %.2f G/s (%d)\n", n * 8 / (t3 - t2) / 1e9, s);
    return 0;
}
