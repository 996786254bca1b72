package org.tflbayes.uq;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.List;
import java.util.Map;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * The Java maths against the shared golden vectors generated from the numpy reference
 * ({@code python -m tflbayes.uncertainty.golden}); the C library and the TF graph head use the same file.
 */
public class GoldenVectorsTest {
    private static final double TOL = 1e-5;
    private static Map<String, Object> golden;

    @BeforeClass
    public static void load() {
        golden = TestData.obj(Json.parse(TestData.read(TestData.goldenPath())));
        assertEquals("tflbayes-golden", golden.get("format"));
    }

    private static List<Object> cases(String key) {
        List<Object> c = TestData.list(golden.get(key));
        assertTrue(key + " has no cases", c.size() > 0);
        return c;
    }

    private static void checkUncertainty(String what, Map<String, Object> c, Uncertainty u) {
        float[] mean = TestData.floats(c.get("mean_probs"));
        assertEquals(what + " classes", mean.length, u.meanProbs.length);
        for (int j = 0; j < mean.length; j++) {
            assertEquals(what + " mean_probs[" + j + "]", mean[j], u.meanProbs[j], TOL);
        }
        assertEquals(what + " total", TestData.num(c.get("total")), u.total, TOL);
        assertEquals(what + " aleatoric", TestData.num(c.get("aleatoric")), u.aleatoric, TOL);
        assertEquals(what + " epistemic", TestData.num(c.get("epistemic")), u.epistemic, TOL);
        assertTrue(what + " epistemic >= 0", u.epistemic >= 0);
    }

    @Test
    public void decompose() {
        List<Object> cs = cases("decompose");
        for (int i = 0; i < cs.size(); i++) {
            Map<String, Object> c = TestData.obj(cs.get(i));
            checkUncertainty("decompose[" + i + "]", c, UncertaintyMath.decompose(TestData.matrix(c.get("probs"))));
        }
    }

    @Test
    public void decomposeLogits() {
        List<Object> cs = cases("decompose_logits");
        for (int i = 0; i < cs.size(); i++) {
            Map<String, Object> c = TestData.obj(cs.get(i));
            checkUncertainty("decompose_logits[" + i + "]", c,
                    UncertaintyMath.decomposeLogits(TestData.matrix(c.get("logits"))));
        }
    }

    @Test
    public void dirichlet() {
        List<Object> cs = cases("dirichlet");
        for (int i = 0; i < cs.size(); i++) {
            Map<String, Object> c = TestData.obj(cs.get(i));
            checkUncertainty("dirichlet[" + i + "]", c, UncertaintyMath.dirichlet(TestData.floats(c.get("alpha"))));
        }
    }

    @Test
    public void digamma() {
        List<Object> cs = cases("digamma");
        for (int i = 0; i < cs.size(); i++) {
            Map<String, Object> c = TestData.obj(cs.get(i));
            double x = TestData.num(c.get("x"));
            double psi = TestData.num(c.get("psi"));
            double got = UncertaintyMath.digamma(x);
            assertEquals("digamma(" + x + ")", psi, got, TOL * Math.max(1.0, Math.abs(psi)));
        }
    }

    @Test
    public void decide() {
        List<Object> cs = cases("decide");
        int abstains = 0;
        for (int i = 0; i < cs.size(); i++) {
            Map<String, Object> c = TestData.obj(cs.get(i));
            int expected = (int) TestData.num(c.get("class_index"));
            int got = Decision.decideIndex(TestData.floats(c.get("mean_probs")), TestData.num(c.get("score")),
                    TestData.num(c.get("threshold")));
            assertEquals("decide[" + i + "]", expected, got);
            abstains += expected < 0 ? 1 : 0;
        }
        assertTrue("the golden decide cases include abstentions", abstains > 0);
    }

    @Test
    public void dequantize() {
        List<Object> cs = cases("dequantize");
        for (int i = 0; i < cs.size(); i++) {
            Map<String, Object> c = TestData.obj(cs.get(i));
            Quantization q = new Quantization(TestData.num(c.get("scale")), (long) TestData.num(c.get("zero_point")));
            float[] got = q.dequantize(TestData.bytes(c.get("q")));
            float[] want = TestData.floats(c.get("values"));
            for (int j = 0; j < want.length; j++) {
                assertEquals("dequantize[" + i + "][" + j + "]", want[j], got[j], TOL * Math.max(1.0, Math.abs(want[j])));
            }
        }
    }

    @Test
    public void quantize() {
        List<Object> cs = cases("quantize");
        for (int i = 0; i < cs.size(); i++) {
            Map<String, Object> c = TestData.obj(cs.get(i));
            Quantization q = new Quantization(TestData.num(c.get("scale")), (long) TestData.num(c.get("zero_point")));
            byte[] got = q.quantize(TestData.floats(c.get("x")));
            byte[] want = TestData.bytes(c.get("q"));
            for (int j = 0; j < want.length; j++) {
                assertEquals("quantize[" + i + "][" + j + "]", want[j], got[j]);
            }
        }
    }
}
