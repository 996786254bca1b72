package org.tflbayes.uq;

/**
 * Affine int8 quantization of one tensor: {@code real = scale * (q - zeroPoint)}.
 *
 * <p>{@link #quantize} follows TFLite's rounding: {@code q = clamp(round_half_away(x / scale) + zeroPoint,
 * -128, 127)}, the division in float32 as the LiteRT kernels do it.
 */
public final class Quantization {
    public final float scale;
    public final int zeroPoint;

    public Quantization(double scale, long zeroPoint) {
        if (!(scale > 0) || Double.isInfinite(scale)) {
            throw new IllegalArgumentException("quantization scale must be finite and > 0; received " + scale);
        }
        if (zeroPoint < -128 || zeroPoint > 127) {
            throw new IllegalArgumentException("int8 zero_point must be in [-128, 127]; received " + zeroPoint);
        }
        this.scale = (float) scale;
        this.zeroPoint = (int) zeroPoint;
    }

    public float dequantize(byte q) {
        return scale * (q - zeroPoint);
    }

    public float[] dequantize(byte[] q) {
        float[] out = new float[q.length];
        for (int i = 0; i < q.length; i++) {
            out[i] = dequantize(q[i]);
        }
        return out;
    }

    public byte quantize(float x) {
        if (Float.isNaN(x)) {
            throw new IllegalArgumentException("cannot quantize NaN");
        }
        float v = x / scale;
        long r = v >= 0 ? (long) Math.floor(v + 0.5) : -(long) Math.floor(-v + 0.5);
        long q = r + zeroPoint;
        return (byte) Math.max(-128, Math.min(127, q));
    }

    public byte[] quantize(float[] x) {
        byte[] out = new byte[x.length];
        for (int i = 0; i < x.length; i++) {
            out[i] = quantize(x[i]);
        }
        return out;
    }

    @Override
    public String toString() {
        return "Quantization(scale=" + scale + ", zeroPoint=" + zeroPoint + ")";
    }
}
