/*
 * tflbayes_uq: the uncertainty head of a tflbayes bundle on a microcontroller (C99).
 *
 * No allocation, no I/O, no dependency beyond <math.h> (expf, logf, sqrtf, cosf, sinf, roundf),
 * <stdint.h> and <stddef.h>. All uncertainties are in nats:
 *
 *   total     = H[mean_s p_s]            (entropy of the posterior predictive)
 *   aleatoric = mean_s H[p_s]            (expected data uncertainty)
 *   epistemic = total - aleatoric >= 0   (mutual information; clipped at 0 against rounding)
 *
 * For a Dirichlet (EnD^2 student, Malinin & Gales 2018) with alpha_0 = sum_c alpha_c:
 *   aleatoric = -sum_c (alpha_c / alpha_0) (psi(alpha_c + 1) - psi(alpha_0 + 1)).
 *
 * Exact zeros in probabilities are safe (0 log 0 = 0). Tested against the golden vectors that
 * `python -m tflbayes.uncertainty.golden` writes from the numpy reference (tests/test_micro_c.py).
 * The source of truth is converters/micro/ in the tflbayes repository; bundles carry a copy.
 */
#ifndef TFLBAYES_UQ_H
#define TFLBAYES_UQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TB_UQ_VERSION 1

typedef struct { float total, aleatoric, epistemic; } tb_uncertainty; /* nats */

/* probs: num_samples rows of num_classes probabilities, row-major; mean_probs: num_classes floats out */
void tb_decompose(const float *probs, int num_samples, int num_classes, float *mean_probs, tb_uncertainty *out);
/* the same from logits (softmax per row, max-subtracted: logits of +-80 are fine) */
void tb_decompose_logits(const float *logits, int num_samples, int num_classes, float *mean_probs,
                         tb_uncertainty *out);
/* alpha: num_classes Dirichlet concentrations > 0; mean_probs = alpha / alpha_0 */
void tb_dirichlet_decompose(const float *alpha, int num_classes, float *mean_probs, tb_uncertainty *out);
/* psi(x) for x > 0 (recurrence to x >= 6, then the asymptotic series); NaN for x <= 0 */
float tb_digamma(float x);
/* the class index (first argmax), or -1 (abstain) when score > threshold */
int tb_decide(const float *mean_probs, int num_classes, float score, float threshold);

/* The noise for stochastic graphs: xoshiro128** seeded by splitmix64 (one global state).
 * uniform = (u32 >> 8) * 2^-24 in [0, 1); normal = Box-Muller on uniform pairs (u1, u2):
 * r = sqrt(-2 ln(1 - u1)), z0 = r cos(2 pi u2), z1 = r sin(2 pi u2); an odd n drops the last z1.
 * Bit-identical uniforms to tflbayes.uncertainty.prng.Xoshiro128 (normals within float32 ulps). */
void tb_rng_seed(uint64_t seed);
uint32_t tb_rng_next_u32(void);
void tb_rng_uniform(float *out, int n);
void tb_rng_normal(float *out, int n);

/* int8 tensors: real = scale * (q - zero_point); q = clamp(round_half_away(real / scale) + zero_point) */
void tb_dequantize_int8(const int8_t *q, int n, float scale, int32_t zero_point, float *out);
void tb_quantize_int8(const float *real, int n, float scale, int32_t zero_point, int8_t *out);

/* Model arrays: CRC-32 (IEEE 802.3, as zlib.crc32) and the check bundle_config.h's values feed. */
#define TB_OK 0
#define TB_ERR_NULL (-1)         /* data is NULL */
#define TB_ERR_LENGTH (-2)       /* the array length differs from the recorded one */
#define TB_ERR_CHECKSUM (-3)     /* the bytes differ from the converted .tflite (edited array) */
#define TB_ERR_NOT_TFLITE (-4)   /* no "TFL3" flatbuffer identifier at offset 4 */
uint32_t tb_crc32(const unsigned char *data, size_t len);
int tb_check_model(const unsigned char *data, size_t len, size_t expected_len, uint32_t expected_crc32);
const char *tb_error_string(int code);

#ifdef __cplusplus
}
#endif

#endif /* TFLBAYES_UQ_H */
