package org.tflbayes.uq;

import java.util.Arrays;

/**
 * A value flowing through a bundle's pipeline: a named, shaped float32 or int8 array.
 *
 * <p>int8 tensors carry their quantization; {@link #toFloat()} dequantizes them.
 */
public final class Tensor {
    public final String name;
    public final int[] shape;
    private final float[] floats;
    private final byte[] bytes;
    public final Quantization quantization;

    private Tensor(String name, int[] shape, float[] floats, byte[] bytes, Quantization q) {
        int n = 1;
        for (int d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("tensor " + name + ": negative dimension in " + Arrays.toString(shape));
            }
            n *= d;
        }
        int len = floats != null ? floats.length : bytes.length;
        if (len != n) {
            throw new IllegalArgumentException("tensor " + name + ": " + len + " values for shape " + Arrays.toString(shape));
        }
        this.name = name;
        this.shape = shape.clone();
        this.floats = floats;
        this.bytes = bytes;
        this.quantization = q;
    }

    public static Tensor ofFloat(String name, int[] shape, float[] values) {
        return new Tensor(name, shape, values.clone(), null, null);
    }

    /** An int8 tensor; {@code q} may be null only where the values are not to be dequantized. */
    public static Tensor ofInt8(String name, int[] shape, byte[] values, Quantization q) {
        return new Tensor(name, shape, null, values.clone(), q);
    }

    public boolean isInt8() {
        return bytes != null;
    }

    public String dtype() {
        return isInt8() ? "int8" : "float32";
    }

    public float[] floats() {
        if (floats == null) {
            throw new IllegalStateException("tensor " + name + " is int8; call toFloat() first");
        }
        return floats.clone();
    }

    public byte[] bytes() {
        if (bytes == null) {
            throw new IllegalStateException("tensor " + name + " is float32");
        }
        return bytes.clone();
    }

    /** The real values: dequantized for int8 (scale and zero point of the tensor), as is for float. */
    public Tensor toFloat() {
        if (!isInt8()) {
            return this;
        }
        if (quantization == null) {
            throw new IllegalStateException("int8 tensor " + name + " has no quantization parameters to dequantize with");
        }
        return new Tensor(name, shape, quantization.dequantize(bytes), null, null);
    }

    /** Row {@code b} of a {@code [B, C]} tensor, or {@code [S][C]} of a {@code [S, B, C]} tensor as a flat copy. */
    float[] row(int b) {
        float[] v = toFloat().floats;
        if (shape.length == 1) {
            return new float[] {v[b]};
        }
        int c = shape[shape.length - 1];
        return Arrays.copyOfRange(v, b * c, (b + 1) * c);
    }

    /** {@code [S][C]} for batch element {@code b} of a {@code [S, B, C]} tensor. */
    float[][] samples(int b) {
        if (shape.length != 3) {
            throw new IllegalArgumentException("tensor " + name + " has shape " + Arrays.toString(shape) + ", expected [S, B, C]");
        }
        float[] v = toFloat().floats;
        int s = shape[0], bsz = shape[1], c = shape[2];
        float[][] out = new float[s][c];
        for (int i = 0; i < s; i++) {
            System.arraycopy(v, (i * bsz + b) * c, out[i], 0, c);
        }
        return out;
    }

    @Override
    public String toString() {
        return "Tensor(" + name + ", " + Arrays.toString(shape) + ", " + dtype() + ")";
    }
}
