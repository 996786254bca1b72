package org.tflbayes.uq;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.junit.runners.Parameterized;
import org.junit.runners.Parameterized.Parameters;

/**
 * Real bundles of every kind, converted by {@code tb.convert} and run by the Python runtime
 * ({@code android_demo/uq/tools/make_fixtures.py}): the Java library must parse each manifest and turn the
 * recorded raw graph outputs into the same class / abstain and uncertainties within 1e-5.
 */
@RunWith(Parameterized.class)
public class BundleFixturesTest {
    private static final double TOL = 1e-5;
    static final Set<String> KINDS = new HashSet<>(Arrays.asList(
            "members-float32", "members-int8", "batched-float32", "batched-int8", "batched-edgetpu",
            "stochastic-float32", "stochastic-int8", "dirichlet-float32", "dirichlet-int8"));

    private final String name;
    private final Map<String, Object> fixture;
    private final BundleManifest manifest;

    public BundleFixturesTest(String name, Path path) {
        this.name = name;
        this.fixture = TestData.obj(Json.parse(TestData.read(path)));
        this.manifest = BundleManifest.parse((String) fixture.get("manifest_json"));
    }

    @Parameters(name = "{0}")
    public static List<Object[]> fixtures() throws IOException {
        List<Object[]> out = new ArrayList<>();
        Set<String> seen = new HashSet<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(TestData.fixturesDir(), "*.json")) {
            for (Path p : ds) {
                String n = p.getFileName().toString().replace(".json", "");
                out.add(new Object[] {n, p});
                seen.add(n);
            }
        }
        assertTrue("fixtures missing: expected " + KINDS + ", found " + seen, seen.containsAll(KINDS));
        out.sort((a, b) -> ((String) a[0]).compareTo((String) b[0]));
        return out;
    }

    @Test
    public void manifestFacts() {
        assertEquals(name, manifest.mode() + "-" + manifest.precision());
        assertEquals(10, manifest.classNames().size());
        assertEquals(Arrays.asList("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"), manifest.classNames());
        assertTrue(manifest.hasThresholds());
        assertTrue(manifest.numSamples() >= 1);
        assertEquals(manifest.mode().equals("dirichlet") ? 1 : manifest.mode().equals("stochastic") ? 4 : 3,
                manifest.numSamples());
        assertArrayEquals(new int[] {1, 8, 8, 1}, manifest.inputShape());
        boolean int8 = !manifest.precision().equals("float32");
        assertEquals(int8 ? "int8" : "float32", manifest.inputDtype());
        assertEquals(int8, manifest.inputQuantization() != null);
    }

    @Test
    public void tensorMapMatchesTheInterpreter() {
        Map<String, Object> details = TestData.obj(fixture.get("graph_tensors"));
        for (String file : details.keySet()) {
            assertTrue(file + " has a tensor map", manifest.hasTensorMap(file));
            Map<String, Object> sides = TestData.obj(details.get(file));
            for (String side : new String[] {"inputs", "outputs"}) {
                Map<String, Object> tensors = TestData.obj(sides.get(side));
                assertEquals(file + " " + side, tensors.keySet(), manifest.tensors(file, side.equals("inputs")).keySet());
                for (Map.Entry<String, Object> e : tensors.entrySet()) {
                    Map<String, Object> d = TestData.obj(e.getValue());
                    TensorInfo t = side.equals("inputs") ? manifest.input(file, e.getKey()) : manifest.output(file, e.getKey());
                    assertEquals(file + " " + e.getKey() + " tensor id", (int) TestData.num(d.get("index")), t.tensorIndex);
                    assertArrayEquals(TestData.ints(d.get("shape")), t.shape);
                    assertEquals(d.get("dtype"), t.dtype);
                    if (t.dtype.equals("int8")) {
                        assertEquals((float) TestData.num(d.get("scale")), t.quantization.scale, 0f);
                        assertEquals((int) TestData.num(d.get("zero_point")), t.quantization.zeroPoint);
                    }
                }
            }
        }
    }

    private void checkRuns(boolean hostHeads) {
        List<Object> inputs = TestData.list(fixture.get("inputs"));
        assertTrue(inputs.size() >= 3);
        for (int i = 0; i < inputs.size(); i++) {
            Map<String, Object> rec = TestData.obj(inputs.get(i));
            ReplayRunner runner = new ReplayRunner(manifest, rec);
            BundlePipeline pipe = new BundlePipeline(manifest, runner, hostHeads);
            Uncertainty u = pipe.runOne(TestData.floats(rec.get("x")));
            String where = name + " input " + i + (hostHeads ? " (host heads)" : " (graph heads)");
            Map<String, Object> py = TestData.obj(rec.get("python"));
            float[] probs = TestData.floats(py.get("probs"));
            for (int j = 0; j < probs.length; j++) {
                assertEquals(where + " probs[" + j + "]", probs[j], u.meanProbs[j], TOL);
            }
            assertEquals(where + " total", TestData.num(py.get("total")), u.total, TOL);
            assertEquals(where + " aleatoric", TestData.num(py.get("aleatoric")), u.aleatoric, TOL);
            assertEquals(where + " epistemic", TestData.num(py.get("epistemic")), u.epistemic, TOL);
            assertEquals(where + " label", (int) TestData.num(py.get("label")), u.argmax());
            assertEquals(where + " decision", py.get("decision"), Decision.decide(u, manifest));
            // the graphs that ran: all Python ran, less the float head where the host computes it
            Set<String> expected = new HashSet<>(runner.recordedFiles());
            if (hostHeads && manifest.postprocessing().equals("cpu_graph") && !manifest.mode().equals("stochastic")) {
                expected.remove("head.tflite");
            }
            assertEquals(where + " graphs run", expected, runner.ran);
        }
    }

    @Test
    public void hostHeadsReproducePython() {
        checkRuns(true);
    }

    @Test
    public void graphHeadsReproducePython() {
        checkRuns(false);
    }

    /** Where the graph outputs per-sample probabilities, the Java decomposition of them agrees with the graph's head. */
    @Test
    public void javaDecompositionOfTheSamplesMatchesTheGraphHead() {
        int checked = 0;
        for (Object o : TestData.list(fixture.get("inputs"))) {
            Map<String, Object> rec = TestData.obj(o);
            for (Object g : TestData.obj(rec.get("graphs")).values()) {
                Map<String, Object> mp = TestData.obj(TestData.obj(TestData.obj(g).get("outputs")).get("member_probs"));
                if (mp == null) {
                    continue;
                }
                int[] shape = TestData.ints(mp.get("shape"));
                Tensor t = Tensor.ofFloat("member_probs", shape, TestData.floats(mp.get("values")));
                Uncertainty u = UncertaintyMath.decompose(t.samples(0));
                Map<String, Object> py = TestData.obj(rec.get("python"));
                assertEquals(name + " total", TestData.num(py.get("total")), u.total, TOL);
                assertEquals(name + " aleatoric", TestData.num(py.get("aleatoric")), u.aleatoric, TOL);
                assertEquals(name + " epistemic", TestData.num(py.get("epistemic")), u.epistemic, TOL);
                checked++;
            }
        }
        if (manifest.mode().equals("batched") || manifest.mode().equals("stochastic")) {
            assertTrue(name + ": no member_probs checked", checked > 0);
        }
    }
}
