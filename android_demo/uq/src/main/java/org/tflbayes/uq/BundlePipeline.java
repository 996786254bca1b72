package org.tflbayes.uq;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Turns inputs into {@link Uncertainty} for every bundle kind, running its stages through a {@link GraphRunner}.
 *
 * <ul>
 *   <li>{@code members}: each member file on the input, its {@code logits [B, C]} dequantized and stacked
 *       to {@code [S, B, C]}, then {@link UncertaintyMath#decomposeLogits} on the host;</li>
 *   <li>{@code batched} / {@code stochastic} / {@code dirichlet}, float: one graph whose in-graph head
 *       outputs {@code probs, total, aleatoric, epistemic};</li>
 *   <li>int8 / Edge TPU: the int8 body (input quantized with the manifest's scale and zero point, outputs
 *       dequantized), then the float head graph, or, with {@code hostHeads} (default), the same head on
 *       the host: {@code logits -> decomposeLogits} (batched), {@code alpha_logits -> dirichletFromLogits}
 *       (EnD²). Other heads (a stochastic int8 head holds the random ops; BDK/GPED, single-pass and
 *       Laplace heads) always run as graphs.</li>
 * </ul>
 */
public final class BundlePipeline {
    private final BundleManifest manifest;
    private final GraphRunner runner;
    private final boolean hostHeads;

    public BundlePipeline(BundleManifest manifest, GraphRunner runner) {
        this(manifest, runner, true);
    }

    public BundlePipeline(BundleManifest manifest, GraphRunner runner, boolean hostHeads) {
        if (manifest == null || runner == null) {
            throw new IllegalArgumentException("manifest and runner must not be null");
        }
        this.manifest = manifest;
        this.runner = runner;
        this.hostHeads = hostHeads;
    }

    public BundleManifest manifest() {
        return manifest;
    }

    /** Values per input of the graph: the product of the input shape without the batch axis. */
    public int inputSize() {
        int[] s = manifest.inputShape();
        int n = 1;
        for (int i = 1; i < s.length; i++) {
            n *= s[i];
        }
        return n;
    }

    /** The bundle's input tensor for {@code batchSize() * inputSize()} float values (quantized for int8 bundles). */
    public Tensor prepareInput(float[] x) {
        int[] shape = manifest.inputShape();
        int n = manifest.batchSize() * inputSize();
        if (x == null || x.length != n) {
            throw new IllegalArgumentException("input must hold " + n + " values for shape " + Arrays.toString(shape)
                    + "; received " + (x == null ? "null" : String.valueOf(x.length)));
        }
        for (int i = 0; i < x.length; i++) {
            if (!Float.isFinite(x[i])) {
                throw new IllegalArgumentException("input[" + i + "] = " + x[i] + " is not finite");
            }
        }
        Quantization q = manifest.inputQuantization();
        if (manifest.inputDtype().equals("int8")) {
            return Tensor.ofInt8("x", shape, q.quantize(x), q);
        }
        return Tensor.ofFloat("x", shape, x);
    }

    /** The uncertainty of one input (the batch is filled by repeating it, as the Python runtime pads). */
    public Uncertainty runOne(float[] x) {
        int n = inputSize();
        if (x == null || x.length != n) {
            throw new IllegalArgumentException("one input must hold " + n + " values; received "
                    + (x == null ? "null" : String.valueOf(x.length)));
        }
        float[] batch = new float[manifest.batchSize() * n];
        for (int b = 0; b < manifest.batchSize(); b++) {
            System.arraycopy(x, 0, batch, b * n, n);
        }
        return run(batch).get(0);
    }

    /** The uncertainty of each of the {@code batchSize()} inputs in {@code x}. */
    public List<Uncertainty> run(float[] x) {
        Map<String, Tensor> values = new HashMap<>();
        values.put("x", prepareInput(x));
        List<BundleManifest.Stage> stages = manifest.stages();
        for (int i = 0; i < stages.size(); i++) {
            BundleManifest.Stage st = stages.get(i);
            if (st.kind.equals("members")) {
                values.put("logits", runMembers(st, values.get("x")));
            } else if (st.kind.equals("graph")) {
                if (i > 0 && hostHeads && hostable(manifest.mode(), st)) {
                    continue; // the same head runs on the host below
                }
                String file = st.files.get(0);
                Map<String, Tensor> feed = new HashMap<>();
                for (String name : st.inputs) {
                    Tensor v = values.get(name);
                    if (v == null) {
                        throw new IllegalStateException(file + " needs input '" + name + "'; the pipeline has " + values.keySet());
                    }
                    feed.put(name, v);
                }
                Map<String, Tensor> out = runner.run(file, feed);
                for (String name : st.outputs) {
                    Tensor t = out.get(name);
                    if (t == null) {
                        throw new IllegalStateException(file + " did not output '" + name + "' (outputs: " + out.keySet() + ")");
                    }
                    values.put(name, t.toFloat());
                }
            } // host_head: computed below from the logits
        }
        List<Uncertainty> result = new ArrayList<>();
        for (int b = 0; b < manifest.batchSize(); b++) {
            Uncertainty u = fromValues(values, b);
            if (u.meanProbs.length != manifest.classNames().size()) {
                throw new IllegalStateException("the bundle outputs " + u.meanProbs.length + " classes, the manifest lists "
                        + manifest.classNames().size());
            }
            result.add(u);
        }
        return result;
    }

    /** The float heads whose maths this library has: the sample head of an ensemble, the EnD² Dirichlet head. */
    private static boolean hostable(String mode, BundleManifest.Stage st) {
        if (st.inputs.size() != 1) {
            return false;
        }
        String in = st.inputs.get(0);
        return (mode.equals("batched") && in.equals("logits")) || (mode.equals("dirichlet") && in.equals("alpha_logits"));
    }

    private Tensor runMembers(BundleManifest.Stage st, Tensor x) {
        int s = st.files.size();
        float[] stacked = null;
        int[] memberShape = null;
        for (int i = 0; i < s; i++) {
            String file = st.files.get(i);
            Map<String, Tensor> feed = new HashMap<>();
            feed.put("x", x);
            Tensor logits = runner.run(file, feed).get("logits");
            if (logits == null) {
                throw new IllegalStateException(file + " did not output 'logits'");
            }
            float[] v = logits.toFloat().floats();
            if (stacked == null) {
                memberShape = logits.shape;
                stacked = new float[s * v.length];
            } else if (!Arrays.equals(memberShape, logits.shape)) {
                throw new IllegalStateException(file + " outputs logits of shape " + Arrays.toString(logits.shape)
                        + ", member 0 " + Arrays.toString(memberShape));
            }
            System.arraycopy(v, 0, stacked, i * v.length, v.length);
        }
        if (memberShape.length != 2) {
            throw new IllegalStateException("member logits must be [B, C]; found " + Arrays.toString(memberShape));
        }
        return Tensor.ofFloat("logits", new int[] {s, memberShape[0], memberShape[1]}, stacked);
    }

    private static Uncertainty fromValues(Map<String, Tensor> values, int b) {
        Tensor probs = values.get("probs");
        Tensor total = values.get("total");
        if (probs != null && total != null) {
            float[] p = probs.row(b);
            double sum = 0.0;
            for (float v : p) {
                sum += v;
            }
            for (int j = 0; j < p.length; j++) {
                p[j] = (float) (p[j] / sum);
            }
            return new Uncertainty(p, total.row(b)[0], scalar(values.get("aleatoric"), b), scalar(values.get("epistemic"), b));
        }
        if (values.containsKey("logits")) {
            return UncertaintyMath.decomposeLogits(values.get("logits").samples(b));
        }
        if (values.containsKey("alpha_logits")) {
            return UncertaintyMath.dirichletFromLogits(values.get("alpha_logits").row(b));
        }
        if (values.containsKey("member_probs")) {
            return UncertaintyMath.decompose(values.get("member_probs").samples(b));
        }
        throw new IllegalStateException("the pipeline produced none of probs+total, logits, alpha_logits, member_probs: "
                + values.keySet());
    }

    private static float scalar(Tensor t, int b) {
        return t == null ? Float.NaN : t.row(b)[0];
    }
}
