package org.tflbayes.uq;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.Map;

/** Test helpers: where the shared test data lives and JSON lists to Java arrays. */
final class TestData {
    private TestData() {
    }

    /** The repository's golden vectors (system property {@code tflbayes.golden}, else found from the working dir). */
    static Path goldenPath() {
        String p = System.getProperty("tflbayes.golden");
        if (p != null) {
            return Paths.get(p);
        }
        for (Path d = Paths.get("").toAbsolutePath(); d != null; d = d.getParent()) {
            Path c = d.resolve("tests/golden/uncertainty_golden.json");
            if (Files.isRegularFile(c)) {
                return c;
            }
        }
        throw new IllegalStateException("tests/golden/uncertainty_golden.json not found; set -Dtflbayes.golden=PATH");
    }

    /** The recorded real-bundle fixtures (system property {@code tflbayes.fixtures}, else src/test/resources/bundles). */
    static Path fixturesDir() {
        String p = System.getProperty("tflbayes.fixtures");
        if (p != null) {
            return Paths.get(p);
        }
        for (Path d = Paths.get("").toAbsolutePath(); d != null; d = d.getParent()) {
            Path c = d.resolve("android_demo/uq/src/test/resources/bundles");
            if (Files.isDirectory(c)) {
                return c;
            }
            c = d.resolve("src/test/resources/bundles");
            if (Files.isDirectory(c)) {
                return c;
            }
        }
        throw new IllegalStateException("bundle fixtures not found; set -Dtflbayes.fixtures=DIR");
    }

    static String read(Path p) {
        try {
            return new String(Files.readAllBytes(p), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new IllegalStateException("cannot read " + p + ": " + e);
        }
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> obj(Object o) {
        return (Map<String, Object>) o;
    }

    @SuppressWarnings("unchecked")
    static List<Object> list(Object o) {
        return (List<Object>) o;
    }

    static double num(Object o) {
        return (Double) o;
    }

    static float[] floats(Object o) {
        List<Object> l = list(o);
        float[] out = new float[l.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = (float) num(l.get(i));
        }
        return out;
    }

    static byte[] bytes(Object o) {
        List<Object> l = list(o);
        byte[] out = new byte[l.size()];
        for (int i = 0; i < out.length; i++) {
            double v = num(l.get(i));
            if (v < -128 || v > 127 || v != Math.rint(v)) {
                throw new IllegalArgumentException("not an int8 value: " + v);
            }
            out[i] = (byte) v;
        }
        return out;
    }

    static int[] ints(Object o) {
        List<Object> l = list(o);
        int[] out = new int[l.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = (int) num(l.get(i));
        }
        return out;
    }

    static float[][] matrix(Object o) {
        List<Object> l = list(o);
        float[][] out = new float[l.size()][];
        for (int i = 0; i < out.length; i++) {
            out[i] = floats(l.get(i));
        }
        return out;
    }
}
