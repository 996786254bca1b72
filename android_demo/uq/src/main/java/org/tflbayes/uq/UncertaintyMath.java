package org.tflbayes.uq;

/**
 * The uncertainty decomposition, the Java twin of {@code tflbayes.uncertainty} (the numpy reference).
 *
 * <p>For S samples {@code p_s} of the class probabilities: {@code total = H[mean_s p_s]},
 * {@code aleatoric = mean_s H[p_s]}, {@code epistemic = max(total - aleatoric, 0)} (the mutual
 * information between the label and the model). For a Dirichlet {@code Dir(alpha)} (an EnD² student,
 * Malinin &amp; Gales 2018): {@code total = H[alpha / alpha_0]},
 * {@code aleatoric = -sum_c (alpha_c / alpha_0)(psi(alpha_c + 1) - psi(alpha_0 + 1))}. All sums run in
 * double; {@code 0 log 0 = 0}, so exact zeros (one-hot samples, int8 outputs) are safe.
 */
public final class UncertaintyMath {
    /** The EnD² parametrisation: {@code alpha = exp(clip(z, ln 1e-3, ln 1e4))} (tflbayes.posterior.dirichlet). */
    public static final double LOG_ALPHA_MIN = Math.log(1e-3);
    public static final double LOG_ALPHA_MAX = Math.log(1e4);

    private UncertaintyMath() {
    }

    /** Decomposes {@code [S][C]} member/sample probabilities (each row sums to 1 within 1e-3). */
    public static Uncertainty decompose(float[][] probs) {
        int c = checkMatrix(probs, "probs");
        int s = probs.length;
        double[] mean = new double[c];
        double aleatoric = 0.0;
        for (int i = 0; i < s; i++) {
            double sum = 0.0;
            for (int j = 0; j < c; j++) {
                double p = probs[i][j];
                if (p < -1e-6) {
                    throw new IllegalArgumentException(
                            "probs[" + i + "][" + j + "] = " + p + " is negative; expected probabilities");
                }
                sum += p;
            }
            if (Math.abs(sum - 1.0) > 1e-3) {
                throw new IllegalArgumentException(
                        "probs[" + i + "] sums to " + sum + "; expected probabilities summing to 1");
            }
            double h = 0.0;
            for (int j = 0; j < c; j++) {
                double p = clip01(probs[i][j]);
                h -= xlogx(p);
                mean[j] += p / s;
            }
            aleatoric += h / s;
        }
        return finish(mean, aleatoric);
    }

    /** Decomposes {@code [S][C]} member/sample logits (softmax per row, entropies from log-softmax). */
    public static Uncertainty decomposeLogits(float[][] logits) {
        int c = checkMatrix(logits, "logits");
        int s = logits.length;
        double[] mean = new double[c];
        double aleatoric = 0.0;
        double[] logp = new double[c];
        for (int i = 0; i < s; i++) {
            double max = Double.NEGATIVE_INFINITY;
            for (int j = 0; j < c; j++) {
                max = Math.max(max, logits[i][j]);
            }
            double z = 0.0;
            for (int j = 0; j < c; j++) {
                z += Math.exp(logits[i][j] - max);
            }
            double logz = Math.log(z) + max;
            double h = 0.0;
            for (int j = 0; j < c; j++) {
                logp[j] = logits[i][j] - logz;
                double p = Math.exp(logp[j]);
                h -= p * logp[j]; // exact where p underflows to 0: p * log p -> 0
                mean[j] += p / s;
            }
            aleatoric += h / s;
        }
        return finish(mean, aleatoric);
    }

    /** The closed-form decomposition of {@code Dir(alpha)}; every {@code alpha_c} finite and > 0. */
    public static Uncertainty dirichlet(float[] alpha) {
        if (alpha == null || alpha.length < 2) {
            throw new IllegalArgumentException("alpha must hold >= 2 concentrations");
        }
        double a0 = 0.0;
        for (int j = 0; j < alpha.length; j++) {
            if (!(alpha[j] > 0) || Float.isInfinite(alpha[j])) {
                throw new IllegalArgumentException(
                        "alpha[" + j + "] = " + alpha[j] + "; expected a finite concentration > 0");
            }
            a0 += alpha[j];
        }
        double[] mean = new double[alpha.length];
        double psi0 = digamma(a0 + 1.0);
        double aleatoric = 0.0;
        for (int j = 0; j < alpha.length; j++) {
            mean[j] = alpha[j] / a0;
            aleatoric -= mean[j] * (digamma(alpha[j] + 1.0) - psi0);
        }
        return finish(mean, aleatoric);
    }

    /** An EnD² student's raw outputs {@code z [C]} to its Dirichlet decomposition (the host Dirichlet head). */
    public static Uncertainty dirichletFromLogits(float[] z) {
        return dirichlet(alphaFromLogits(z));
    }

    /** {@code alpha = exp(clip(z, ln 1e-3, ln 1e4))}, as the bundle's Dirichlet head computes it. */
    public static float[] alphaFromLogits(float[] z) {
        if (z == null || z.length < 2) {
            throw new IllegalArgumentException("alpha logits must hold >= 2 values");
        }
        float[] a = new float[z.length];
        for (int j = 0; j < z.length; j++) {
            if (Float.isNaN(z[j])) {
                throw new IllegalArgumentException("alpha_logits[" + j + "] is NaN");
            }
            a[j] = (float) Math.exp(Math.min(Math.max(z[j], LOG_ALPHA_MIN), LOG_ALPHA_MAX));
        }
        return a;
    }

    /**
     * The digamma function psi(x) = d/dx ln Gamma(x), to double precision for x &gt; 0.
     *
     * <p>The recurrence {@code psi(x) = psi(x + 1) - 1/x} moves x to {@code y >= 10}, where the asymptotic
     * series {@code ln y - 1/(2y) - sum_k B_2k / (2k y^2k)} (7 terms, error &lt; 1e-16) is evaluated.
     * Negative non-integers use the reflection {@code psi(1 - x) - pi cot(pi x)}; 0 and negative integers
     * (poles) give NaN.
     */
    public static double digamma(double x) {
        if (Double.isNaN(x) || x == Double.NEGATIVE_INFINITY) {
            return Double.NaN;
        }
        if (x == Double.POSITIVE_INFINITY) {
            return x;
        }
        if (x <= 0.0) {
            if (x == Math.floor(x)) {
                return Double.NaN;
            }
            return digamma(1.0 - x) - Math.PI / Math.tan(Math.PI * x);
        }
        double shift = 0.0;
        while (x < 10.0) {
            shift -= 1.0 / x;
            x += 1.0;
        }
        double inv2 = 1.0 / (x * x);
        // Bernoulli terms B_2k / (2k): 1/12, -1/120, 1/252, -1/240, 1/132, -691/32760, 1/12
        double series = inv2 * (1.0 / 12 - inv2 * (1.0 / 120 - inv2 * (1.0 / 252 - inv2 * (1.0 / 240
                - inv2 * (1.0 / 132 - inv2 * (691.0 / 32760 - inv2 / 12))))));
        return shift + Math.log(x) - 0.5 / x - series;
    }

    static double xlogx(double p) {
        return p > 0.0 ? p * Math.log(p) : 0.0;
    }

    private static double clip01(double p) {
        return p < 0.0 ? 0.0 : (p > 1.0 ? 1.0 : p);
    }

    private static Uncertainty finish(double[] mean, double aleatoric) {
        double total = 0.0;
        float[] m = new float[mean.length];
        for (int j = 0; j < mean.length; j++) {
            total -= xlogx(mean[j]);
            m[j] = (float) mean[j];
        }
        double epistemic = Math.max(total - aleatoric, 0.0);
        return new Uncertainty(m, (float) total, (float) aleatoric, (float) epistemic);
    }

    private static int checkMatrix(float[][] m, String name) {
        if (m == null || m.length < 1) {
            throw new IllegalArgumentException(name + " must hold >= 1 sample row");
        }
        int c = m[0] == null ? 0 : m[0].length;
        if (c < 2) {
            throw new IllegalArgumentException(name + " rows must hold >= 2 classes");
        }
        for (int i = 0; i < m.length; i++) {
            if (m[i] == null || m[i].length != c) {
                throw new IllegalArgumentException(name + "[" + i + "] has " + (m[i] == null ? 0 : m[i].length)
                        + " classes, row 0 has " + c);
            }
            for (int j = 0; j < c; j++) {
                if (!Float.isFinite(m[i][j])) {
                    throw new IllegalArgumentException(name + "[" + i + "][" + j + "] = " + m[i][j] + " is not finite");
                }
            }
        }
        return c;
    }
}
