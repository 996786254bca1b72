package org.tflbayes.uq;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A stage's {@code tensors} entry of the manifest (format version 2): per graph file, the name, position
 * ({@code index}), flatbuffer id ({@code tensor_index}), shape, dtype and quantization of every input and
 * output, in interpreter order:
 *
 * <pre>
 * "tensors": {"model.tflite": {"inputs": [{"name": "x", "index": 0, "tensor_index": 0, "shape": [1, 8, 8, 1],
 *                                          "dtype": "int8", "quantization": {"scale": 0.0039, "zero_point": -128}}],
 *                              "outputs": [...]}}
 * </pre>
 */
final class TensorMaps {
    /** The inputs and outputs of one graph file, by name. */
    static final class FileTensors {
        final Map<String, TensorInfo> inputs;
        final Map<String, TensorInfo> outputs;

        FileTensors(Map<String, TensorInfo> inputs, Map<String, TensorInfo> outputs) {
            this.inputs = Collections.unmodifiableMap(inputs);
            this.outputs = Collections.unmodifiableMap(outputs);
        }
    }

    private TensorMaps() {
    }

    static Map<String, FileTensors> read(Object raw, List<String> files, String where) {
        if (!(raw instanceof Map)) {
            throw new IllegalArgumentException("manifest field `" + where + "` must be an object keyed by file name");
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> m = (Map<String, Object>) raw;
        Map<String, FileTensors> out = new LinkedHashMap<>();
        for (String f : files) {
            Object entry = m.get(f);
            String w = where + "[\"" + f + "\"]";
            if (!(entry instanceof Map)) {
                throw new IllegalArgumentException("manifest field `" + w + "` is missing");
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> e = (Map<String, Object>) entry;
            out.put(f, new FileTensors(side(e, "inputs", w), side(e, "outputs", w)));
        }
        return out;
    }

    private static Map<String, TensorInfo> side(Map<String, Object> e, String key, String where) {
        List<Object> entries = BundleManifest.list(e, key, where + "." + key);
        Map<String, TensorInfo> out = new LinkedHashMap<>();
        for (int i = 0; i < entries.size(); i++) {
            String w = where + "." + key + "[" + i + "]";
            if (!(entries.get(i) instanceof Map)) {
                throw new IllegalArgumentException("manifest field `" + w + "` must be an object");
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> t = (Map<String, Object>) entries.get(i);
            String name = BundleManifest.str(t, "name", w + ".name");
            int index = BundleManifest.integer(t, "index", w + ".index");
            if (index < 0 || index >= entries.size()) {
                throw new IllegalArgumentException("manifest field `" + w + ".index` is " + index + "; the graph has "
                        + entries.size() + " " + key);
            }
            int tensorIndex = t.get("tensor_index") == null ? -1 : BundleManifest.integer(t, "tensor_index", w + ".tensor_index");
            int[] shape = BundleManifest.shape(BundleManifest.list(t, "shape", w + ".shape"), w + ".shape");
            String dtype = BundleManifest.str(t, "dtype", w + ".dtype");
            Object q = t.get("quantization");
            Quantization quant = q == null ? null : BundleManifest.quantization(q, w + ".quantization");
            if (dtype.equals("int8") && quant == null) {
                throw new IllegalArgumentException("manifest field `" + w + ".quantization` is missing for int8 tensor '" + name + "'");
            }
            if (out.containsKey(name)) {
                throw new IllegalArgumentException("manifest field `" + where + "." + key + "` lists '" + name + "' twice");
            }
            out.put(name, new TensorInfo(name, index, tensorIndex, shape, dtype, quant));
        }
        return out;
    }
}
