/* The golden-vector test of tflbayes_uq (host gcc and Cortex-M under qemu semihosting).
 * Build: python writes golden_vectors.h (converters/micro/golden_header.py), then
 *   gcc -std=c99 -Wall -Wextra -Werror -O2 -I. -I<dir of golden_vectors.h> test_golden.c tflbayes_uq.c -lm
 * Prints one line per failure and "tflbayes_uq golden: N checks, 0 failures"; exits 1 on any failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "golden_vectors.h"
#include "tflbayes_uq.h"

#define TOL 1e-5
#define MAXC 16

static int checks = 0, failures = 0;

static void check(const char *what, int i, double got, double want, double tol)
{
    ++checks;
    if (!(fabs(got - want) <= tol)) {
        ++failures;
        printf("FAIL %s[%d]: got %.9g, expected %.9g (tolerance %.3g)\n", what, i, got, want, tol);
    }
}

static void check_triple(const char *what, int i, const tb_uncertainty *u, const double *exp)
{
    check(what, i, u->total, exp[0], TOL);
    check(what, i, u->aleatoric, exp[1], TOL);
    check(what, i, u->epistemic, exp[2], TOL);
}

static void prob_section(const char *what, int n, const int32_t *meta, const float *in, const double *mean,
                         const double *exp, int logits)
{
    int i, c;
    float m[MAXC];
    tb_uncertainty u;
    for (i = 0; i < n; ++i) {
        int s = meta[4 * i], k = meta[4 * i + 1], off = meta[4 * i + 2], moff = meta[4 * i + 3];
        if (logits) tb_decompose_logits(in + off, s, k, m, &u);
        else tb_decompose(in + off, s, k, m, &u);
        for (c = 0; c < k; ++c) check(what, i, m[c], mean[moff + c], TOL);
        check_triple(what, i, &u, exp + 3 * i);
    }
}

int main(void)
{
    int i, c;
    float m[MAXC], buf[64];
    tb_uncertainty u;
    prob_section("decompose", DEC_N, dec_meta, dec_in, dec_mean, dec_exp, 0);
    prob_section("decompose_logits", LGT_N, lgt_meta, lgt_in, lgt_mean, lgt_exp, 1);
    for (i = 0; i < DIR_N; ++i) {
        int k = dir_meta[2 * i], off = dir_meta[2 * i + 1];
        tb_dirichlet_decompose(dir_in + off, k, m, &u);
        for (c = 0; c < k; ++c) check("dirichlet.mean", i, m[c], dir_mean[off + c], TOL);
        check_triple("dirichlet", i, &u, dir_exp + 3 * i);
    }
    for (i = 0; i < DIG_N; ++i) {
        double psi = dig_psi[i], scale = fabs(psi) > 1.0 ? fabs(psi) : 1.0;
        check("digamma", i, tb_digamma(dig_x[i]) / scale, psi / scale, TOL);
    }
    ++checks;
    if (!isnan(tb_digamma(0.0f)) || !isnan(tb_digamma(-1.0f))) {
        ++failures;
        printf("FAIL digamma: x <= 0 must give NaN\n");
    }
    for (i = 0; i < DCD_N; ++i) {
        int k = dcd_meta[3 * i], off = dcd_meta[3 * i + 1];
        check("decide", i, tb_decide(dcd_probs + off, k, dcd_st[2 * i], dcd_st[2 * i + 1]), dcd_meta[3 * i + 2], 0.0);
    }
    for (i = 0; i < DQ_N; ++i) {
        int n = dq_meta[3 * i], off = dq_meta[3 * i + 1];
        tb_dequantize_int8(dq_q + off, n, dq_scale[i], dq_meta[3 * i + 2], buf);
        for (c = 0; c < n; ++c) check("dequantize", i, buf[c], dq_values[off + c], TOL * (fabs(dq_values[off + c]) > 1 ? fabs(dq_values[off + c]) : 1));
    }
    for (i = 0; i < QZ_N; ++i) {
        int8_t q[64];
        int n = qz_meta[3 * i], off = qz_meta[3 * i + 1];
        tb_quantize_int8(qz_x + off, n, qz_scale[i], qz_meta[3 * i + 2], q);
        for (c = 0; c < n; ++c) check("quantize", i, q[c], qz_q[off + c], 0.0);
    }
    for (i = 0; i < CRC_N; ++i) {
        uint32_t got = tb_crc32(crc_data + crc_meta[2 * i + 1], (size_t)crc_meta[2 * i]);
        ++checks;
        if (got != crc_exp[i]) { ++failures; printf("FAIL crc32[%d]: got %lu\n", i, (unsigned long)got); }
    }
    tb_rng_seed(RNG_SEED);
    for (i = 0; i < 8; ++i) {
        uint32_t got = tb_rng_next_u32();
        ++checks;
        if (got != rng_u32[i]) { ++failures; printf("FAIL rng.u32[%d]: got %lu\n", i, (unsigned long)got); }
    }
    tb_rng_seed(RNG_SEED);
    tb_rng_uniform(buf, RNG_NU);
    for (i = 0; i < RNG_NU; ++i) check("rng.uniform (bit-exact)", i, buf[i], rng_uniform[i], 0.0);
    tb_rng_seed(RNG_SEED);
    tb_rng_normal(buf, RNG_NN);
    for (i = 0; i < RNG_NN; ++i) check("rng.normal", i, buf[i], rng_normal[i], TOL);
    tb_rng_seed(0);
    tb_rng_uniform(buf, RNG0_NU);
    for (i = 0; i < RNG0_NU; ++i) check("rng.seed0.uniform", i, buf[i], rng0_uniform[i], 0.0);
    tb_rng_normal(buf, RNG0_NN);
    for (i = 0; i < RNG0_NN; ++i) check("rng.seed0.normal", i, buf[i], rng0_normal[i], TOL);
    printf("tflbayes_uq golden: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
