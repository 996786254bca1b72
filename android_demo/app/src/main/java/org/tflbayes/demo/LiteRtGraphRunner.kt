package org.tflbayes.demo

import android.content.res.AssetManager
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import org.tflbayes.uq.BundleManifest
import org.tflbayes.uq.GraphRunner
import org.tflbayes.uq.Tensor

/**
 * Runs a bundle's graph files with LiteRT's CompiledModel API, one model per file, created on first use.
 *
 * Buffers are addressed by position: the manifest's tensor map gives, per file, each named input/output's
 * `index` in the graph's input/output order (the order of `createInputBuffers()` / `createOutputBuffers()`)
 * and the quantization of int8 outputs, so uq can dequantize them.
 */
class LiteRtGraphRunner(
    private val assets: AssetManager,
    private val bundleDir: String,
    private val manifest: BundleManifest,
) : GraphRunner, AutoCloseable {
    private val models = HashMap<String, CompiledModel>()

    override fun run(file: String, inputs: Map<String, Tensor>): Map<String, Tensor> {
        val model = models.getOrPut(file) {
            CompiledModel.create(assets, "$bundleDir/$file", CompiledModel.Options(Accelerator.CPU))
        }
        val inBuffers = model.createInputBuffers()
        val outBuffers = model.createOutputBuffers()
        try {
            for ((name, tensor) in inputs) {
                val buffer = inBuffers[manifest.inputIndex(file, name)]
                if (tensor.isInt8) buffer.writeInt8(tensor.bytes()) else buffer.writeFloat(tensor.floats())
            }
            model.run(inBuffers, outBuffers)
            return manifest.tensors(file, false).values.associate { info ->
                val buffer = outBuffers[info.index]
                info.name to if (info.dtype == "int8") {
                    Tensor.ofInt8(info.name, info.shape, buffer.readInt8(), info.quantization)
                } else {
                    Tensor.ofFloat(info.name, info.shape, buffer.readFloat())
                }
            }
        } finally {
            inBuffers.forEach { it.close() }
            outBuffers.forEach { it.close() }
        }
    }

    override fun close() {
        models.values.forEach { it.close() }
        models.clear()
    }
}
