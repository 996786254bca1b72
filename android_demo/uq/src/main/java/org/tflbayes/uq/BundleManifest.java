package org.tflbayes.uq;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A bundle's {@code manifest.json} (written by {@code tflbayes convert}), read strictly.
 *
 * <p>Every field the app relies on is checked when parsing; a missing or mistyped one raises
 * {@link IllegalArgumentException} naming the field (e.g. {@code "manifest field `stages[1].file` is
 * missing"}). Unknown extra fields are ignored, so newer converters stay readable.
 */
public final class BundleManifest {
    public static final String FORMAT = "tflbayes-bundle";
    public static final int MAX_FORMAT_VERSION = 2;
    public static final List<String> MODES = Arrays.asList("members", "batched", "stochastic", "dirichlet", "single_pass");
    public static final List<String> PRECISIONS = Arrays.asList("float32", "float16", "dynamic", "int8", "edgetpu");
    /** Where the uncertainty head runs: in the model, in a separate float CPU graph, or on the host. */
    public static final List<String> POSTPROCESSING = Arrays.asList("in_graph", "cpu_graph", "host");

    /** One stage of the pipeline: a graph file, the member files, or the host head. */
    public static final class Stage {
        /** {@code "graph"}, {@code "members"} or {@code "host_head"}. */
        public final String kind;
        /** The graph file (kind graph) or the member files (kind members); empty for host_head. */
        public final List<String> files;
        public final List<String> inputs;
        public final List<String> outputs;
        /** {@code "cpu"} or {@code "edgetpu"}. */
        public final String runsOn;
        /** Per file: the tensor map, empty where the manifest has none (format version 1). */
        final Map<String, TensorMaps.FileTensors> tensors;

        Stage(String kind, List<String> files, List<String> inputs, List<String> outputs, String runsOn,
              Map<String, TensorMaps.FileTensors> tensors) {
            this.kind = kind;
            this.files = Collections.unmodifiableList(files);
            this.inputs = Collections.unmodifiableList(inputs);
            this.outputs = Collections.unmodifiableList(outputs);
            this.runsOn = runsOn;
            this.tensors = tensors;
        }
    }

    private final int formatVersion;
    private final String target;
    private final String mode;
    private final String precision;
    private final int numSamples;
    private final List<String> classNames;
    private final int[] inputShape;
    private final String inputDtype;
    private final Quantization inputQuantization;
    private final String postprocessing;
    private final List<Stage> stages;
    private final Map<String, Object> thresholds; // null when not calibrated

    private BundleManifest(Map<String, Object> m) {
        String format = str(m, "format", "format");
        if (!FORMAT.equals(format)) {
            throw new IllegalArgumentException("manifest field `format` is '" + format + "', expected '" + FORMAT + "'");
        }
        formatVersion = integer(m, "format_version", "format_version");
        if (formatVersion < 1 || formatVersion > MAX_FORMAT_VERSION) {
            throw new IllegalArgumentException("manifest field `format_version` is " + formatVersion
                    + "; this library reads 1.." + MAX_FORMAT_VERSION);
        }
        if (formatVersion >= 2) {
            target = str(m, "target", "target");
            if (!target.equals("litert") && !target.equals("micro")) {
                throw new IllegalArgumentException("manifest field `target` is '" + target + "'; expected litert or micro");
            }
        } else {
            target = "litert";
        }
        mode = oneOf(m, "mode", MODES);
        precision = oneOf(m, "precision", PRECISIONS);
        numSamples = integer(m, "num_samples", "num_samples");
        if (numSamples < 1) {
            throw new IllegalArgumentException("manifest field `num_samples` must be >= 1; found " + numSamples);
        }
        List<String> names = new ArrayList<>();
        List<Object> rawNames = list(m, "class_names", "class_names");
        for (int i = 0; i < rawNames.size(); i++) {
            if (!(rawNames.get(i) instanceof String)) {
                throw new IllegalArgumentException("manifest field `class_names[" + i + "]` must be a string");
            }
            names.add((String) rawNames.get(i));
        }
        if (names.size() < 2) {
            throw new IllegalArgumentException("manifest field `class_names` must list >= 2 classes; found " + names.size());
        }
        classNames = Collections.unmodifiableList(names);
        Map<String, Object> input = object(m, "input", "input");
        inputShape = shape(list(input, "shape", "input.shape"), "input.shape");
        inputDtype = str(input, "dtype", "input.dtype");
        if (!inputDtype.equals("float32") && !inputDtype.equals("int8")) {
            throw new IllegalArgumentException("manifest field `input.dtype` is '" + inputDtype + "'; expected float32 or int8");
        }
        Object q = input.get("quantization");
        inputQuantization = q == null ? null : quantization(q, "input.quantization");
        if (inputDtype.equals("int8") && inputQuantization == null) {
            throw new IllegalArgumentException("manifest field `input.quantization` is missing for an int8 input");
        }
        postprocessing = oneOf(m, "postprocessing", POSTPROCESSING);
        List<Object> rawStages = list(m, "stages", "stages");
        if (rawStages.isEmpty()) {
            throw new IllegalArgumentException("manifest field `stages` is empty");
        }
        List<Stage> st = new ArrayList<>();
        for (int i = 0; i < rawStages.size(); i++) {
            st.add(stage(rawStages.get(i), "stages[" + i + "]"));
        }
        stages = Collections.unmodifiableList(st);
        Object thr = m.get("thresholds");
        if (thr != null && !(thr instanceof Map)) {
            throw new IllegalArgumentException("manifest field `thresholds` must be an object or null");
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> t = (Map<String, Object>) thr;
        thresholds = t;
        if (t != null) {
            String score = thresholdScore();
            if (!score.equals("epistemic") && !score.equals("total")) {
                throw new IllegalArgumentException("manifest field `thresholds.score` is '" + score + "'; expected epistemic or total");
            }
            if (!(t.get(score) instanceof Double)) {
                throw new IllegalArgumentException("manifest field `thresholds." + score + "` must be a number");
            }
        }
    }

    /** Parses the text of a {@code manifest.json}. */
    public static BundleManifest parse(String json) {
        Object root = Json.parse(json);
        if (!(root instanceof Map)) {
            throw new IllegalArgumentException("manifest must be a JSON object");
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> m = (Map<String, Object>) root;
        return new BundleManifest(m);
    }

    public int formatVersion() { return formatVersion; }
    /** {@code "litert"} or {@code "micro"} (format version 1 bundles are litert). */
    public String target() { return target; }
    public int numSamples() { return numSamples; }
    public List<String> classNames() { return classNames; }
    public String mode() { return mode; }
    public String precision() { return precision; }
    public String postprocessing() { return postprocessing; }
    public List<Stage> stages() { return stages; }
    public int[] inputShape() { return inputShape.clone(); }
    public String inputDtype() { return inputDtype; }
    /** The input's int8 quantization, or null for a float input. */
    public Quantization inputQuantization() { return inputQuantization; }
    /** The static batch of the graphs (the first input dimension). */
    public int batchSize() { return inputShape[0]; }

    /** Whether the converter calibrated abstention thresholds. */
    public boolean hasThresholds() {
        return thresholds != null;
    }

    /** The calibrated score ({@code "epistemic"} or {@code "total"}); {@code "epistemic"} when uncalibrated. */
    public String thresholdScore() {
        if (thresholds == null) {
            return "epistemic";
        }
        Object s = thresholds.get("score");
        return s instanceof String ? (String) s : "epistemic";
    }

    /** The calibrated threshold of a score, or {@code NaN} when the manifest has none. */
    public double threshold(String score) {
        Object v = thresholds == null ? null : thresholds.get(score);
        return v instanceof Double ? (Double) v : Double.NaN;
    }

    /** Whether the manifest maps the tensors of {@code file} (format version 2: {@code stages[i].tensors}). */
    public boolean hasTensorMap(String file) {
        return tensorsOf(file) != null;
    }

    /** The manifest's description of input {@code name} of graph {@code file}. */
    public TensorInfo input(String file, String name) {
        return lookup(file, name, true);
    }

    /** The manifest's description of output {@code name} of graph {@code file}. */
    public TensorInfo output(String file, String name) {
        return lookup(file, name, false);
    }

    /** The position of input {@code name} of {@code file} (for {@code Interpreter.getInputTensor}). */
    public int inputIndex(String file, String name) {
        return input(file, name).index;
    }

    /** The position of output {@code name} of {@code file} (for {@code Interpreter.getOutputTensor}). */
    public int outputIndex(String file, String name) {
        return output(file, name).index;
    }

    /** All inputs (or outputs) of {@code file} by name, in interpreter order. */
    public Map<String, TensorInfo> tensors(String file, boolean inputs) {
        TensorMaps.FileTensors t = tensorsOf(file);
        if (t == null) {
            throw new IllegalArgumentException("manifest has no tensor map for " + file + " (format version "
                    + formatVersion + "); look tensors up by signature name instead");
        }
        return inputs ? t.inputs : t.outputs;
    }

    private TensorInfo lookup(String file, String name, boolean inputs) {
        Map<String, TensorInfo> map = tensors(file, inputs);
        TensorInfo t = map.get(name);
        if (t == null) {
            throw new IllegalArgumentException(file + " has no " + (inputs ? "input" : "output") + " named '" + name
                    + "' in the manifest; it has " + map.keySet());
        }
        return t;
    }

    private TensorMaps.FileTensors tensorsOf(String file) {
        for (Stage s : stages) {
            TensorMaps.FileTensors t = s.tensors.get(file);
            if (t != null) {
                return t;
            }
        }
        return null;
    }

    // -- parsing helpers ------------------------------------------------------------------------------

    private static Stage stage(Object raw, String where) {
        if (!(raw instanceof Map)) {
            throw new IllegalArgumentException("manifest field `" + where + "` must be an object");
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> s = (Map<String, Object>) raw;
        String kind = str(s, "kind", where + ".kind");
        List<String> files = new ArrayList<>();
        if (kind.equals("graph")) {
            files.add(plainName(str(s, "file", where + ".file"), where + ".file"));
        } else if (kind.equals("members")) {
            List<Object> f = list(s, "files", where + ".files");
            for (int i = 0; i < f.size(); i++) {
                if (!(f.get(i) instanceof String)) {
                    throw new IllegalArgumentException("manifest field `" + where + ".files[" + i + "]` must be a string");
                }
                files.add(plainName((String) f.get(i), where + ".files[" + i + "]"));
            }
            if (files.isEmpty()) {
                throw new IllegalArgumentException("manifest field `" + where + ".files` is empty");
            }
        } else if (!kind.equals("host_head")) {
            throw new IllegalArgumentException("manifest field `" + where + ".kind` is '" + kind
                    + "'; expected graph, members or host_head");
        }
        List<String> inputs = strings(s.get("inputs"), where + ".inputs", kind.equals("members") ? "x" : null);
        List<String> outputs = strings(s.get("outputs"), where + ".outputs", null);
        Object runsOn = s.get("runs_on");
        String ro = runsOn instanceof String ? (String) runsOn : "cpu";
        Map<String, TensorMaps.FileTensors> tensors = s.get("tensors") == null || files.isEmpty()
                ? new LinkedHashMap<String, TensorMaps.FileTensors>()
                : TensorMaps.read(s.get("tensors"), files, where + ".tensors");
        return new Stage(kind, files, inputs, outputs, ro, tensors);
    }

    private static String plainName(String f, String where) {
        if (f.isEmpty() || f.contains("/") || f.contains("\\") || f.equals("..")) {
            throw new IllegalArgumentException("manifest field `" + where + "` must be a plain file name; found '" + f + "'");
        }
        return f;
    }

    static List<String> strings(Object raw, String where, String dflt) {
        List<String> out = new ArrayList<>();
        if (raw == null) {
            if (dflt != null) {
                out.add(dflt);
            }
            return out;
        }
        if (!(raw instanceof List)) {
            throw new IllegalArgumentException("manifest field `" + where + "` must be a list of names");
        }
        for (Object o : (List<?>) raw) {
            if (!(o instanceof String)) {
                throw new IllegalArgumentException("manifest field `" + where + "` must be a list of names");
            }
            out.add((String) o);
        }
        return out;
    }

    static Quantization quantization(Object raw, String where) {
        if (!(raw instanceof Map)) {
            throw new IllegalArgumentException("manifest field `" + where + "` must be an object");
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> q = (Map<String, Object>) raw;
        Object scale = q.containsKey("scale") ? q.get("scale") : first(q.get("scales"));
        Object zp = q.containsKey("zero_point") ? q.get("zero_point") : first(q.get("zero_points"));
        if (!(scale instanceof Double)) {
            throw new IllegalArgumentException("manifest field `" + where + ".scale` must be a number");
        }
        if (!(zp instanceof Double) || (Double) zp != Math.rint((Double) zp)) {
            throw new IllegalArgumentException("manifest field `" + where + ".zero_point` must be an integer");
        }
        try {
            return new Quantization((Double) scale, ((Double) zp).longValue());
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("manifest field `" + where + "`: " + e.getMessage());
        }
    }

    private static Object first(Object list) {
        return list instanceof List && !((List<?>) list).isEmpty() ? ((List<?>) list).get(0) : null;
    }

    static int[] shape(List<Object> raw, String where) {
        int[] out = new int[raw.size()];
        for (int i = 0; i < out.length; i++) {
            Object d = raw.get(i);
            if (!(d instanceof Double) || (Double) d != Math.rint((Double) d) || (Double) d < 1) {
                throw new IllegalArgumentException("manifest field `" + where + "` must list positive integer sizes; found " + raw);
            }
            out[i] = ((Double) d).intValue();
        }
        if (out.length == 0) {
            throw new IllegalArgumentException("manifest field `" + where + "` is empty");
        }
        return out;
    }

    private static Object need(Map<String, Object> m, String key, String where) {
        if (!m.containsKey(key) || m.get(key) == null) {
            throw new IllegalArgumentException("manifest field `" + where + "` is missing");
        }
        return m.get(key);
    }

    static String str(Map<String, Object> m, String key, String where) {
        Object v = need(m, key, where);
        if (!(v instanceof String)) {
            throw new IllegalArgumentException("manifest field `" + where + "` must be a string; found " + v);
        }
        return (String) v;
    }

    static int integer(Map<String, Object> m, String key, String where) {
        Object v = need(m, key, where);
        if (!(v instanceof Double) || (Double) v != Math.rint((Double) v) || Math.abs((Double) v) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("manifest field `" + where + "` must be an integer; found " + v);
        }
        return ((Double) v).intValue();
    }

    @SuppressWarnings("unchecked")
    static List<Object> list(Map<String, Object> m, String key, String where) {
        Object v = need(m, key, where);
        if (!(v instanceof List)) {
            throw new IllegalArgumentException("manifest field `" + where + "` must be a list");
        }
        return (List<Object>) v;
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> object(Map<String, Object> m, String key, String where) {
        Object v = need(m, key, where);
        if (!(v instanceof Map)) {
            throw new IllegalArgumentException("manifest field `" + where + "` must be an object");
        }
        return (Map<String, Object>) v;
    }

    private static String oneOf(Map<String, Object> m, String key, List<String> allowed) {
        String v = str(m, key, key);
        if (!allowed.contains(v)) {
            throw new IllegalArgumentException("manifest field `" + key + "` is '" + v + "'; known: " + allowed);
        }
        return v;
    }
}
