package org.tflbayes.uq;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads a stage's {@code tensors} entry of the manifest: per graph file, the name, tensor index, shape,
 * dtype and quantization of every input and output.
 *
 * <p>Accepted layouts: for a graph stage {@code {"inputs": [...], "outputs": [...]}} or a plain list of
 * tensors; for any stage the same keyed by file name ({@code {"member_000.tflite": {...}}}).
 */
final class TensorMaps {
    private TensorMaps() {
    }

    static void read(Object raw, List<String> files, String where, Map<String, Map<String, TensorInfo>> out) {
        if (raw instanceof Map) {
            @SuppressWarnings("unchecked")
            Map<String, Object> m = (Map<String, Object>) raw;
            boolean perFile = false;
            for (String f : files) {
                perFile |= m.containsKey(f);
            }
            if (perFile) {
                for (String f : files) {
                    if (!m.containsKey(f)) {
                        throw new IllegalArgumentException("manifest field `" + where + "` has no entry for " + f);
                    }
                    out.put(f, one(m.get(f), where + "." + f));
                }
                return;
            }
        }
        if (files.size() != 1) {
            throw new IllegalArgumentException("manifest field `" + where + "` must be keyed by file name for "
                    + files.size() + " files");
        }
        out.put(files.get(0), one(raw, where));
    }

    private static Map<String, TensorInfo> one(Object raw, String where) {
        Map<String, TensorInfo> out = new LinkedHashMap<>();
        if (raw instanceof List) {
            add((List<?>) raw, where, out);
        } else if (raw instanceof Map) {
            @SuppressWarnings("unchecked")
            Map<String, Object> m = (Map<String, Object>) raw;
            for (String side : new String[] {"inputs", "outputs"}) {
                Object v = m.get(side);
                if (v == null) {
                    throw new IllegalArgumentException("manifest field `" + where + "." + side + "` is missing");
                }
                if (!(v instanceof List)) {
                    throw new IllegalArgumentException("manifest field `" + where + "." + side + "` must be a list");
                }
                add((List<?>) v, where + "." + side, out);
            }
        } else {
            throw new IllegalArgumentException("manifest field `" + where + "` must be an object or a list");
        }
        return out;
    }

    private static void add(List<?> entries, String where, Map<String, TensorInfo> out) {
        for (int i = 0; i < entries.size(); i++) {
            String w = where + "[" + i + "]";
            if (!(entries.get(i) instanceof Map)) {
                throw new IllegalArgumentException("manifest field `" + w + "` must be an object");
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> e = (Map<String, Object>) entries.get(i);
            String name = BundleManifest.str(e, "name", w + ".name");
            int index = BundleManifest.integer(e, "index", w + ".index");
            int[] shape = BundleManifest.shape(BundleManifest.list(e, "shape", w + ".shape"), w + ".shape");
            String dtype = BundleManifest.str(e, "dtype", w + ".dtype");
            Object q = e.get("quantization");
            Quantization quant = null;
            if (q != null && !(q instanceof Map && ((Map<?, ?>) q).isEmpty())) {
                quant = BundleManifest.quantization(q, w + ".quantization");
            }
            if (dtype.equals("int8") && quant == null) {
                throw new IllegalArgumentException("manifest field `" + w + ".quantization` is missing for int8 tensor " + name);
            }
            if (out.containsKey(name)) {
                throw new IllegalArgumentException("manifest field `" + where + "` lists tensor '" + name + "' twice");
            }
            out.put(name, new TensorInfo(name, index, shape, dtype, quant));
        }
    }
}
