package org.tflbayes.uq;

/**
 * The bundle's calibrated abstention rule: the most probable class, or {@value #ABSTAIN} when the
 * calibrated uncertainty score exceeds its threshold (the uncertainty that kept the manifest's
 * {@code thresholds.coverage} of in-distribution validation inputs). Identical to the Python runtime's
 * {@code Bundle.decide} and the C library's {@code tb_decide}; a non-finite score or probability also
 * abstains (a broken output must never look confident).
 */
public final class Decision {
    public static final String ABSTAIN = "abstain";

    private Decision() {
    }

    /** A class name of the bundle, or {@value #ABSTAIN}; throws if the manifest has no calibrated threshold. */
    public static String decide(Uncertainty u, BundleManifest m) {
        String score = m.thresholdScore();
        double threshold = m.threshold(score);
        if (Double.isNaN(threshold)) {
            throw new IllegalStateException("the bundle has no calibrated " + score + " threshold (manifest field "
                    + "`thresholds`); convert it with calibration data or use decide(u, m, threshold)");
        }
        return decide(u, m, score, threshold);
    }

    /** As {@link #decide(Uncertainty, BundleManifest)} with an explicit score and threshold. */
    public static String decide(Uncertainty u, BundleManifest m, String score, double threshold) {
        if (u.meanProbs.length != m.classNames().size()) {
            throw new IllegalArgumentException("the uncertainty has " + u.meanProbs.length + " classes, the bundle "
                    + m.classNames().size());
        }
        int k = decideIndex(u.meanProbs, u.score(score), threshold);
        return k < 0 ? ABSTAIN : m.classNames().get(k);
    }

    /** The first index of the largest probability, or -1 (abstain) when {@code score > threshold} or non-finite. */
    public static int decideIndex(float[] meanProbs, double score, double threshold) {
        if (!Double.isFinite(score) || Double.isNaN(threshold) || score > threshold) {
            return -1;
        }
        int best = 0;
        for (int c = 0; c < meanProbs.length; c++) {
            if (!Float.isFinite(meanProbs[c])) {
                return -1;
            }
            if (meanProbs[c] > meanProbs[best]) {
                best = c;
            }
        }
        return best;
    }
}
