package org.tflbayes.demo

import android.content.res.AssetManager
import android.os.SystemClock
import org.tflbayes.uq.BundleManifest
import org.tflbayes.uq.BundlePipeline
import org.tflbayes.uq.Decision
import org.tflbayes.uq.Uncertainty

/** The helper that owns one bundle's LiteRT models: input pixels -> class or "I don't know", with uncertainties. */
class BundleClassifier(assets: AssetManager, val name: String) : AutoCloseable {
    data class Result(val decision: String, val uncertainty: Uncertainty, val latencyMs: Double) {
        val abstains get() = decision == Decision.ABSTAIN
    }

    val manifest: BundleManifest =
        BundleManifest.parse(assets.open("$BUNDLES/$name/manifest.json").bufferedReader().use { it.readText() })
    private val runner = LiteRtGraphRunner(assets, "$BUNDLES/$name", manifest)
    private val pipeline = BundlePipeline(manifest, runner)

    /** Height and width of the bundle's input image (shape [B, H, W, C]). */
    val inputSize: Pair<Int, Int> get() = manifest.inputShape().let { it[1] to it[2] }

    /** [pixels]: H x W values in [0, 1], row-major, ink = 1 (as the digits the bundles were trained on). */
    fun classify(pixels: FloatArray): Result {
        val start = SystemClock.elapsedRealtimeNanos()
        val u = pipeline.runOne(pixels)
        val ms = (SystemClock.elapsedRealtimeNanos() - start) / 1e6
        return Result(Decision.decide(u, manifest), u, ms)
    }

    override fun close() = runner.close()

    companion object {
        const val BUNDLES = "bundles"

        /** The bundle folders copied into the APK's assets (see app/build.gradle.kts, copyBundles). */
        fun available(assets: AssetManager): List<String> =
            assets.list(BUNDLES).orEmpty().filter { assets.list("$BUNDLES/$it").orEmpty().contains("manifest.json") }.sorted()
    }
}
