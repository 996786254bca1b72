/* tflbayes_uq.c: see tflbayes_uq.h. C99, no allocation, float arithmetic only. */
#include "tflbayes_uq.h"

#include <math.h>

#define TB_TWO_PI 6.28318530717958647692f

static float tb_xlogx(float p) { return p > 0.0f ? p * logf(p) : 0.0f; }

static float tb_entropy(const float *p, int n)
{
    float h = 0.0f;
    int c;
    for (c = 0; c < n; ++c) h -= tb_xlogx(p[c]);
    return h;
}

static void tb_finish(const float *mean_probs, int num_classes, float aleatoric, tb_uncertainty *out)
{
    float total = tb_entropy(mean_probs, num_classes);
    float epi = total - aleatoric;
    out->total = total;
    out->aleatoric = aleatoric;
    out->epistemic = epi > 0.0f ? epi : 0.0f;
}

void tb_decompose(const float *probs, int num_samples, int num_classes, float *mean_probs, tb_uncertainty *out)
{
    int s, c;
    float aleatoric = 0.0f;
    for (c = 0; c < num_classes; ++c) mean_probs[c] = 0.0f;
    for (s = 0; s < num_samples; ++s) {
        const float *row = probs + (size_t)s * (size_t)num_classes;
        for (c = 0; c < num_classes; ++c) {
            float p = row[c] < 0.0f ? 0.0f : (row[c] > 1.0f ? 1.0f : row[c]);
            mean_probs[c] += p;
            aleatoric -= tb_xlogx(p);
        }
    }
    for (c = 0; c < num_classes; ++c) mean_probs[c] /= (float)num_samples;
    tb_finish(mean_probs, num_classes, aleatoric / (float)num_samples, out);
}

void tb_decompose_logits(const float *logits, int num_samples, int num_classes, float *mean_probs,
                         tb_uncertainty *out)
{
    int s, c;
    float aleatoric = 0.0f;
    for (c = 0; c < num_classes; ++c) mean_probs[c] = 0.0f;
    for (s = 0; s < num_samples; ++s) {
        const float *z = logits + (size_t)s * (size_t)num_classes;
        float m = z[0], sum = 0.0f, log_sum, h;
        for (c = 1; c < num_classes; ++c) if (z[c] > m) m = z[c];
        for (c = 0; c < num_classes; ++c) sum += expf(z[c] - m);
        log_sum = logf(sum);
        /* H = -sum p (z - m - log_sum) = log_sum - sum p (z - m): no log of a tiny p */
        h = log_sum;
        for (c = 0; c < num_classes; ++c) {
            float p = expf(z[c] - m) / sum;
            mean_probs[c] += p;
            h -= p * (z[c] - m);
        }
        aleatoric += h > 0.0f ? h : 0.0f;
    }
    for (c = 0; c < num_classes; ++c) mean_probs[c] /= (float)num_samples;
    tb_finish(mean_probs, num_classes, aleatoric / (float)num_samples, out);
}

float tb_digamma(float x)
{
    float result = 0.0f, inv, inv2;
    if (!(x > 0.0f)) return NAN;
    /* psi(x) = psi(x + 1) - 1/x until x >= 6, where the asymptotic series is accurate to 3e-9 */
    while (x < 6.0f) {
        result -= 1.0f / x;
        x += 1.0f;
    }
    inv = 1.0f / x;
    inv2 = inv * inv;
    result += logf(x) - 0.5f * inv
              - inv2 * (1.0f / 12.0f - inv2 * (1.0f / 120.0f - inv2 * (1.0f / 252.0f - inv2 * (1.0f / 240.0f))));
    return result;
}

void tb_dirichlet_decompose(const float *alpha, int num_classes, float *mean_probs, tb_uncertainty *out)
{
    int c;
    float a0 = 0.0f, psi0, aleatoric = 0.0f;
    for (c = 0; c < num_classes; ++c) a0 += alpha[c];
    psi0 = tb_digamma(a0 + 1.0f);
    for (c = 0; c < num_classes; ++c) {
        mean_probs[c] = alpha[c] / a0;
        aleatoric -= mean_probs[c] * (tb_digamma(alpha[c] + 1.0f) - psi0);
    }
    tb_finish(mean_probs, num_classes, aleatoric, out);
}

int tb_decide(const float *mean_probs, int num_classes, float score, float threshold)
{
    int c, best = 0;
    if (score > threshold) return -1;
    for (c = 1; c < num_classes; ++c) if (mean_probs[c] > mean_probs[best]) best = c;
    return best;
}

/* ---- PRNG: xoshiro128** (Blackman & Vigna 2018), seeded by splitmix64 ---- */
static uint32_t tb_rng_s[4] = {1u, 0u, 0u, 0u};

static uint64_t tb_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint32_t tb_rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

void tb_rng_seed(uint64_t seed)
{
    uint64_t st = seed, a = tb_splitmix64(&st), b = tb_splitmix64(&st);
    tb_rng_s[0] = (uint32_t)a;
    tb_rng_s[1] = (uint32_t)(a >> 32);
    tb_rng_s[2] = (uint32_t)b;
    tb_rng_s[3] = (uint32_t)(b >> 32);
    if ((tb_rng_s[0] | tb_rng_s[1] | tb_rng_s[2] | tb_rng_s[3]) == 0u) tb_rng_s[0] = 1u;
}

uint32_t tb_rng_next_u32(void)
{
    uint32_t *s = tb_rng_s;
    uint32_t result = tb_rotl(s[1] * 5u, 7) * 9u, t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = tb_rotl(s[3], 11);
    return result;
}

static float tb_rng_u24(void) { return (float)(tb_rng_next_u32() >> 8) * (1.0f / 16777216.0f); }

void tb_rng_uniform(float *out, int n)
{
    int i;
    for (i = 0; i < n; ++i) out[i] = tb_rng_u24();
}

void tb_rng_normal(float *out, int n)
{
    int i;
    for (i = 0; i < n; i += 2) {
        float u1 = tb_rng_u24(), u2 = tb_rng_u24();
        float r = sqrtf(-2.0f * logf(1.0f - u1)), th = TB_TWO_PI * u2;
        out[i] = r * cosf(th);
        if (i + 1 < n) out[i + 1] = r * sinf(th);
    }
}

/* ---- int8 tensors ---- */
void tb_dequantize_int8(const int8_t *q, int n, float scale, int32_t zero_point, float *out)
{
    int i;
    for (i = 0; i < n; ++i) out[i] = scale * (float)((int32_t)q[i] - zero_point);
}

void tb_quantize_int8(const float *real, int n, float scale, int32_t zero_point, int8_t *out)
{
    int i;
    for (i = 0; i < n; ++i) {
        float v = roundf(real[i] / scale) + (float)zero_point; /* roundf: half away from zero, as TFLite */
        out[i] = (int8_t)(v < -128.0f ? -128 : (v > 127.0f ? 127 : (int32_t)v));
    }
}

/* ---- model arrays ---- */
uint32_t tb_crc32(const unsigned char *data, size_t len)
{
    uint32_t crc = 0xFFFFFFFFu;
    size_t i;
    int k;
    for (i = 0; i < len; ++i) {
        crc ^= data[i];
        for (k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return crc ^ 0xFFFFFFFFu;
}

int tb_check_model(const unsigned char *data, size_t len, size_t expected_len, uint32_t expected_crc32)
{
    if (data == NULL) return TB_ERR_NULL;
    if (len != expected_len) return TB_ERR_LENGTH;
    if (len < 8 || data[4] != 'T' || data[5] != 'F' || data[6] != 'L' || data[7] != '3') return TB_ERR_NOT_TFLITE;
    if (tb_crc32(data, len) != expected_crc32) return TB_ERR_CHECKSUM;
    return TB_OK;
}

const char *tb_error_string(int code)
{
    switch (code) {
    case TB_OK: return "ok";
    case TB_ERR_NULL: return "model array is NULL";
    case TB_ERR_LENGTH: return "model array length differs from bundle_config.h";
    case TB_ERR_CHECKSUM: return "model array CRC-32 differs from bundle_config.h (edited array?)";
    case TB_ERR_NOT_TFLITE: return "model array is not a TFLite flatbuffer (no TFL3 identifier)";
    default: return "unknown error";
    }
}
