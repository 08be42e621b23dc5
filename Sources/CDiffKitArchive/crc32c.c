// See dkarchive.h.
#include "dkarchive.h"
#include <pthread.h>
#include <stdint.h>

/* CRC-32C (Castagnoli) of file contents recorded at import (tar-split): the SSE4.2 instruction
 * where the CPU has it, a table otherwise.
 *
 * The instruction has a latency of three cycles and a throughput of one, so a single chain runs at
 * a third of its speed. Large buffers are cut in three equal blocks whose CRCs run side by side
 * (three independent chains) and are then combined: the CRC of A followed by B is the CRC of A
 * "shifted" over len(B) zero bytes, xor the CRC of B (from zero). The shift is a linear map over
 * GF(2), applied through four 256-entry tables made once per block length (the method of Mark
 * Adler's crc32c.c). */

#define POLY 0x82F63B78u
#define LONG 8192
#define SHORT 256

static uint32_t crc32c_table[256];
static uint32_t crc32c_long[4][256];
static uint32_t crc32c_short[4][256];

static uint32_t gf2_matrix_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    while (vec) {
        if (vec & 1) sum ^= *mat;
        vec >>= 1;
        mat++;
    }
    return sum;
}

static void gf2_matrix_square(uint32_t *square, const uint32_t *mat) {
    for (int n = 0; n < 32; n++) square[n] = gf2_matrix_times(mat, mat[n]);
}

/* The operator that appends `len` zero bytes (a power of two) to a CRC, in `even`. */
static void crc32c_zeros_op(uint32_t *even, size_t len) {
    uint32_t odd[32];
    uint32_t row = 1;
    odd[0] = POLY; /* one zero bit */
    for (int n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    gf2_matrix_square(even, odd); /* two zero bits */
    gf2_matrix_square(odd, even); /* four */
    do {                          /* one byte, two, four, ... until len is used up */
        gf2_matrix_square(even, odd);
        len >>= 1;
        if (len == 0) return;
        gf2_matrix_square(odd, even);
        len >>= 1;
    } while (len);
    for (int n = 0; n < 32; n++) even[n] = odd[n];
}

static void crc32c_zeros(uint32_t zeros[][256], size_t len) {
    uint32_t op[32];
    crc32c_zeros_op(op, len);
    for (uint32_t n = 0; n < 256; n++) {
        zeros[0][n] = gf2_matrix_times(op, n);
        zeros[1][n] = gf2_matrix_times(op, n << 8);
        zeros[2][n] = gf2_matrix_times(op, n << 16);
        zeros[3][n] = gf2_matrix_times(op, n << 24);
    }
}

static uint32_t crc32c_shift(uint32_t zeros[][256], uint32_t crc) {
    return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^ zeros[3][crc >> 24];
}

static void crc32c_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        crc32c_table[i] = c;
    }
    crc32c_zeros(crc32c_long, LONG);
    crc32c_zeros(crc32c_short, SHORT);
}

static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__)
#include <nmmintrin.h>
/* `crc` is the inverted running value (as the instruction takes it). */
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c0 = crc;
    while (n && ((uintptr_t)p & 7)) { c0 = _mm_crc32_u8((uint32_t)c0, *p++); n--; }
    while (n >= 3 * LONG) {
        uint64_t c1 = 0, c2 = 0;
        const unsigned char *end = p + LONG;
        do {
            c0 = _mm_crc32_u64(c0, *(const uint64_t *)p);
            c1 = _mm_crc32_u64(c1, *(const uint64_t *)(p + LONG));
            c2 = _mm_crc32_u64(c2, *(const uint64_t *)(p + 2 * LONG));
            p += 8;
        } while (p < end);
        c0 = crc32c_shift(crc32c_long, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = crc32c_shift(crc32c_long, (uint32_t)c0) ^ (uint32_t)c2;
        p += 2 * LONG;
        n -= 3 * LONG;
    }
    while (n >= 3 * SHORT) {
        uint64_t c1 = 0, c2 = 0;
        const unsigned char *end = p + SHORT;
        do {
            c0 = _mm_crc32_u64(c0, *(const uint64_t *)p);
            c1 = _mm_crc32_u64(c1, *(const uint64_t *)(p + SHORT));
            c2 = _mm_crc32_u64(c2, *(const uint64_t *)(p + 2 * SHORT));
            p += 8;
        } while (p < end);
        c0 = crc32c_shift(crc32c_short, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = crc32c_shift(crc32c_short, (uint32_t)c0) ^ (uint32_t)c2;
        p += 2 * SHORT;
        n -= 3 * SHORT;
    }
    while (n >= 8) { c0 = _mm_crc32_u64(c0, *(const uint64_t *)p); p += 8; n -= 8; }
    while (n) { c0 = _mm_crc32_u8((uint32_t)c0, *p++); n--; }
    return (uint32_t)c0;
}
#endif

uint32_t dk_crc32c_table(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    pthread_once(&crc32c_once, crc32c_init);
    crc = ~crc;
    while (n--) crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint32_t dk_crc32c(uint32_t crc, const void *data, size_t n) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) {
        pthread_once(&crc32c_once, crc32c_init);
        return ~crc32c_hw(~crc, data, n);
    }
#endif
    return dk_crc32c_table(crc, data, n);
}
