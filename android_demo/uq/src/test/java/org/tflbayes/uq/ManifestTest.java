package org.tflbayes.uq;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.BeforeClass;
import org.junit.Test;

/** Bad manifests and bad JSON are refused with a message naming the field; the decision rule's edge cases. */
public class ManifestTest {
    private static String batchedInt8;
    private static String members;

    @BeforeClass
    public static void load() {
        Path dir = TestData.fixturesDir();
        batchedInt8 = (String) TestData.obj(Json.parse(TestData.read(dir.resolve("batched-int8.json")))).get("manifest_json");
        members = (String) TestData.obj(Json.parse(TestData.read(dir.resolve("members-float32.json")))).get("manifest_json");
    }

    private static void refused(String json, String field) {
        try {
            BundleManifest.parse(json);
            fail("accepted a manifest that should name " + field);
        } catch (IllegalArgumentException e) {
            assertTrue("message '" + e.getMessage() + "' should name " + field, e.getMessage().contains(field));
        }
    }

    private static String edit(String json, String from, String to) {
        assertTrue("the fixture manifest contains " + from, json.contains(from));
        return json.replaceFirst(java.util.regex.Pattern.quote(from), java.util.regex.Matcher.quoteReplacement(to));
    }

    @Test
    public void aRealManifestParses() {
        BundleManifest m = BundleManifest.parse(batchedInt8);
        assertEquals("batched", m.mode());
        assertEquals(2, m.stages().size());
        assertEquals(Arrays.asList("x"), m.stages().get(0).inputs);
        assertEquals(0, m.inputIndex("body.tflite", "x"));
        assertTrue(m.output("body.tflite", "logits").quantization != null);
        assertEquals("epistemic", m.thresholdScore());
        assertTrue(m.threshold("epistemic") > 0);
        BundleManifest mm = BundleManifest.parse(members);
        assertEquals(3, mm.stages().get(0).files.size());
        assertEquals("host", mm.postprocessing());
        for (String f : mm.stages().get(0).files) {
            assertEquals(0, mm.outputIndex(f, "logits"));
        }
    }

    @Test
    public void badFieldsAreNamed() {
        refused(edit(batchedInt8, "\"format\": \"tflbayes-bundle\"", "\"format\": \"zip\""), "`format`");
        refused(edit(batchedInt8, "\"format_version\": 2", "\"format_version\": 9"), "`format_version`");
        refused(edit(batchedInt8, "\"mode\": \"batched\"", "\"mode\": \"magic\""), "`mode`");
        refused(edit(batchedInt8, "\"precision\": \"int8\"", "\"precision\": \"int4\""), "`precision`");
        refused(edit(batchedInt8, "\"num_samples\": 3", "\"num_samples\": \"3\""), "`num_samples`");
        refused(edit(batchedInt8, "\"num_samples\": 3", "\"num_samples\": 0"), "`num_samples`");
        refused(edit(batchedInt8, "\"class_names\":", "\"class_namez\":"), "`class_names`");
        refused(edit(batchedInt8, "\"stages\":", "\"stagez\":"), "`stages`");
        refused(edit(batchedInt8, "\"target\": \"litert\"", "\"target\": \"gpu\""), "`target`");
        refused(edit(batchedInt8, "\"postprocessing\": \"cpu_graph\"", "\"postprocessing\": \"cloud\""), "`postprocessing`");
        refused(edit(batchedInt8, "\"file\": \"body.tflite\"", "\"file\": \"../body.tflite\""), "`stages[0].file`");
        refused(edit(batchedInt8, "\"kind\": \"graph\"", "\"kind\": \"mystery\""), "`stages[0].kind`");
        refused(edit(batchedInt8, "\"tensor_index\": 0,", "\"tensor_index\": \"zero\","), "tensor_index");
        refused(edit(batchedInt8, "\"dtype\": \"int8\", \"quantization\": {", "\"dtype\": \"int8\", \"quantization\": null, \"q\": {"),
                "quantization");
        refused(edit(batchedInt8, "\"score\": \"epistemic\"", "\"score\": \"vibes\""), "`thresholds.score`");
        refused(edit(members, "\"files\": [\"member_000.tflite\", ", "\"files\": [\"\", "), "`stages[0].files[0]`");
        refused("[1, 2]", "JSON object");
    }

    @Test
    public void formatVersion1HasNoTensorMap() {
        String v1 = edit(batchedInt8, "\"format_version\": 2", "\"format_version\": 1").replace("\"tensors\":", "\"tensorz\":")
                .replace("\"target\": \"litert\", ", "");
        BundleManifest m = BundleManifest.parse(v1);
        assertEquals("litert", m.target());
        assertFalse(m.hasTensorMap("body.tflite"));
        try {
            m.inputIndex("body.tflite", "x");
            fail("a version-1 manifest has no tensor indices");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("no tensor map for body.tflite"));
        }
        refused(edit(batchedInt8, "\"target\": \"litert\", ", ""), "`target`");  // version 2 needs it
    }

    @Test
    public void jsonIsStrict() {
        for (String bad : new String[] {"{\"a\": 1,}", "{'a': 1}", "{\"a\": 01}", "{\"a\": 1} x", "{\"a\": 1, \"a\": 2}",
                                        "[1 2]", "{\"a\": \"\\q\"}", "{\"a\": tru}", "", "{\"a\": 1.}", "{\"a\": .5}"}) {
            try {
                Json.parse(bad);
                fail("accepted invalid JSON " + bad);
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage(), e.getMessage().startsWith("invalid JSON at offset"));
            }
        }
        Map<String, Object> ok = TestData.obj(Json.parse(" {\"a\": [1, -2.5e-3, true, null, \"\\u00e9\\n\"], \"b\": NaN, \"c\": -Infinity} "));
        List<Object> a = TestData.list(ok.get("a"));
        assertEquals(1.0, TestData.num(a.get(0)), 0);
        assertEquals(-2.5e-3, TestData.num(a.get(1)), 0);
        assertEquals(Boolean.TRUE, a.get(2));
        assertEquals(null, a.get(3));
        assertEquals("\u00e9\n", a.get(4));
        assertTrue(Double.isNaN(TestData.num(ok.get("b"))));
        assertEquals(Double.NEGATIVE_INFINITY, TestData.num(ok.get("c")), 0);
    }

    @Test
    public void nonFiniteUncertaintyAbstains() {
        BundleManifest m = BundleManifest.parse(batchedInt8);
        float[] p = new float[10];
        p[3] = 1f;
        assertEquals("3", Decision.decide(new Uncertainty(p, 0f, 0f, 0f), m));
        assertEquals(Decision.ABSTAIN, Decision.decide(new Uncertainty(p, 0f, 0f, Float.NaN), m));
        assertEquals(Decision.ABSTAIN, Decision.decide(new Uncertainty(p, 0f, 0f, Float.POSITIVE_INFINITY), m));
        float[] bad = p.clone();
        bad[5] = Float.NaN;
        assertEquals(Decision.ABSTAIN, Decision.decide(new Uncertainty(bad, 0f, 0f, 0f), m));
        assertEquals(Decision.ABSTAIN, Decision.decide(new Uncertainty(p, 0f, 0f, (float) (m.threshold("epistemic") * 2)), m));
        assertEquals("3", Decision.decide(new Uncertainty(p, 9f, 0f, 0.5f), m, "epistemic", 0.5));  // score == threshold keeps
        try {
            Decision.decide(new Uncertainty(new float[] {0.5f, 0.5f}, 0f, 0f, 0f), m);
            fail("accepted 2 classes for a 10-class bundle");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage().contains("10"));
        }
    }

    @Test
    public void badMathInputsAreRefused() {
        String[] cases = {"probs", "logits", "alpha"};
        for (String c : cases) {
            try {
                switch (c) {
                    case "probs": UncertaintyMath.decompose(new float[][] {{0.7f, 0.7f}}); break;
                    case "logits": UncertaintyMath.decomposeLogits(new float[][] {{0f, Float.NaN}}); break;
                    default: UncertaintyMath.dirichlet(new float[] {1f, 0f});
                }
                fail(c + " accepted");
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage(), e.getMessage().startsWith(c));
            }
        }
        assertFalse(Double.isNaN(UncertaintyMath.digamma(-0.5)));
        assertEquals(0.03649, UncertaintyMath.digamma(-0.5), 1e-5);  // psi(-1/2) = 2 - gamma - 2 ln 2
        assertTrue(Double.isNaN(UncertaintyMath.digamma(-2.0)));
    }
}
