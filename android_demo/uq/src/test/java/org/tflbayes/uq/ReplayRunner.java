package org.tflbayes.uq;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;

import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A {@link GraphRunner} that replays what one real bundle's graphs output for one input, as the Python
 * runtime recorded it, and checks that the Java pipeline fed each graph exactly what Python fed it.
 */
final class ReplayRunner implements GraphRunner {
    private final BundleManifest manifest;
    private final Map<String, Object> record;   // one entry of the fixture's "inputs"
    private final Map<String, Object> graphs;
    final Set<String> ran = new LinkedHashSet<>();

    ReplayRunner(BundleManifest manifest, Map<String, Object> record) {
        this.manifest = manifest;
        this.record = record;
        this.graphs = TestData.obj(record.get("graphs"));
    }

    @Override
    public Map<String, Tensor> run(String file, Map<String, Tensor> inputs) {
        assertTrue("the pipeline ran " + file + ", which Python did not record", graphs.containsKey(file));
        assertTrue(file + " ran twice", ran.add(file));
        Map<String, Object> g = TestData.obj(graphs.get(file));
        for (Map.Entry<String, Tensor> e : inputs.entrySet()) {
            Tensor t = e.getValue();
            if (e.getKey().equals("x")) {
                if (t.isInt8()) {  // quantized by the Java side exactly as the Python runtime did
                    assertArrayEquals(file + " int8 input x", TestData.bytes(record.get("x_int8")), t.bytes());
                } else {
                    assertArrayEquals(file + " float input x", TestData.floats(record.get("x")), t.floats(), 0f);
                }
                continue;
            }
            Map<String, Object> want = TestData.obj(TestData.obj(g.get("inputs")).get(e.getKey()));
            assertNotNull(file + " got an unexpected input " + e.getKey(), want);
            float[] expected = TestData.floats(want.get("values"));
            float[] got = t.toFloat().floats();
            assertEquals(expected.length, got.length);
            for (int i = 0; i < got.length; i++) {
                assertEquals(file + " input " + e.getKey() + "[" + i + "]", expected[i], got[i], 1e-6 * Math.max(1, Math.abs(expected[i])));
            }
        }
        Map<String, Tensor> out = new HashMap<>();
        for (Map.Entry<String, Object> e : TestData.obj(g.get("outputs")).entrySet()) {
            Map<String, Object> o = TestData.obj(e.getValue());
            int[] shape = TestData.ints(o.get("shape"));
            if ("int8".equals(o.get("dtype"))) {
                Quantization q = quantization(file, e.getKey(), o);
                out.put(e.getKey(), Tensor.ofInt8(e.getKey(), shape, TestData.bytes(o.get("values")), q));
            } else {
                out.put(e.getKey(), Tensor.ofFloat(e.getKey(), shape, TestData.floats(o.get("values"))));
            }
        }
        return out;
    }

    /** The output's quantization from the manifest's tensor map (checked against the interpreter's). */
    private Quantization quantization(String file, String name, Map<String, Object> recorded) {
        Quantization q = manifest.output(file, name).quantization;
        assertNotNull(file + " output " + name + " has no quantization in the manifest", q);
        assertEquals((float) TestData.num(recorded.get("scale")), q.scale, 0f);
        assertEquals((int) TestData.num(recorded.get("zero_point")), q.zeroPoint);
        return q;
    }

    /** The graph files Python ran for this input. */
    List<String> recordedFiles() {
        return new java.util.ArrayList<>(graphs.keySet());
    }
}
