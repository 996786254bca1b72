package org.tflbayes.uq;

import java.util.Arrays;

/** What the manifest says about one input or output tensor of one graph file. */
public final class TensorInfo {
    public final String name;
    /** The tensor index in the file's subgraph (what {@code Interpreter.getInputTensor(i)} etc. need), or -1. */
    public final int index;
    public final int[] shape;
    /** {@code "float32"}, {@code "int8"}, ... */
    public final String dtype;
    /** {@code null} for float tensors. */
    public final Quantization quantization;

    public TensorInfo(String name, int index, int[] shape, String dtype, Quantization quantization) {
        this.name = name;
        this.index = index;
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
