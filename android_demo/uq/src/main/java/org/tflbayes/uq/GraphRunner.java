package org.tflbayes.uq;

import java.util.Map;

/**
 * Runs one graph file of a bundle: the seam between this library and an interpreter.
 *
 * <p>On Android the app implements it with LiteRT's {@code Interpreter} (tensor indices from
 * {@link BundleManifest#tensorIndex}, or the graph's signature names); the tests implement it by replaying
 * the outputs the Python runtime recorded.
 */
public interface GraphRunner {
    /**
     * Runs {@code file} on named inputs (already in the graph's dtype: int8 inputs quantized).
     *
     * @return every output by name; int8 outputs carry their quantization so that they can be dequantized.
     */
    Map<String, Tensor> run(String file, Map<String, Tensor> inputs);
}
