package org.tflbayes.uq;

import java.util.Arrays;

/**
 * The posterior predictive of one input and its uncertainty decomposition, in nats.
 *
 * <p>{@code total = H[meanProbs]}, {@code aleatoric} = the expected entropy of the samples (or of the
 * Dirichlet), {@code epistemic = total - aleatoric} (the mutual information, clipped at 0). A bundle that
 * provides no aleatoric/epistemic part (a BDK student) has {@code NaN} there.
 */
public final class Uncertainty {
    public final float[] meanProbs;
    public final float total;
    public final float aleatoric;
    public final float epistemic;

    public Uncertainty(float[] meanProbs, float total, float aleatoric, float epistemic) {
        if (meanProbs == null || meanProbs.length < 2) {
            throw new IllegalArgumentException("meanProbs must hold >= 2 class probabilities");
        }
        this.meanProbs = meanProbs.clone();
        this.total = total;
        this.aleatoric = aleatoric;
        this.epistemic = epistemic;
    }

    /** The first index of the largest probability (NaN entries never win). */
    public int argmax() {
        int best = 0;
        for (int c = 1; c < meanProbs.length; c++) {
            if (meanProbs[c] > meanProbs[best] || Float.isNaN(meanProbs[best])) {
                best = c;
            }
        }
        return best;
    }

    /** The value of a named score: {@code "total"}, {@code "aleatoric"} or {@code "epistemic"}. */
    public float score(String name) {
        switch (name) {
            case "total": return total;
            case "aleatoric": return aleatoric;
            case "epistemic": return epistemic;
            default:
                throw new IllegalArgumentException(
                        "score must be 'total', 'aleatoric' or 'epistemic'; received '" + name + "'");
        }
    }

    @Override
    public String toString() {
        return "Uncertainty(meanProbs=" + Arrays.toString(meanProbs) + ", total=" + total + ", aleatoric="
                + aleatoric + ", epistemic=" + epistemic + ")";
    }
}
