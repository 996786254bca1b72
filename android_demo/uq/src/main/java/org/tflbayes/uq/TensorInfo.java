package org.tflbayes.uq;

import java.util.Arrays;

/** What the manifest says about one input or output tensor of one graph file. */
public final class TensorInfo {
    public final String name;
    /** The position among the graph's inputs (or outputs): what {@code Interpreter.getInputTensor(i)} /
     *  {@code getOutputTensor(i)} and TFLite Micro's {@code input(i)} / {@code output(i)} take. */
    public final int index;
    /** The flatbuffer tensor id ({@code tensor_index}), or -1 where the manifest does not say. */
    public final int tensorIndex;
    public final int[] shape;
    /** {@code "float32"}, {@code "int8"}, ... */
    public final String dtype;
    /** {@code null} for float tensors. */
    public final Quantization quantization;

    public TensorInfo(String name, int index, int tensorIndex, int[] shape, String dtype, Quantization quantization) {
        this.name = name;
        this.index = index;
        this.tensorIndex = tensorIndex;
        this.shape = shape.clone();
        this.dtype = dtype;
        this.quantization = quantization;
    }

    public int numElements() {
        int n = 1;
        for (int d : shape) {
            n *= d;
        }
        return n;
    }

    @Override
    public String toString() {
        return "TensorInfo(" + name + ", index=" + index + ", shape=" + Arrays.toString(shape) + ", " + dtype
                + (quantization == null ? "" : ", " + quantization) + ")";
    }
}
