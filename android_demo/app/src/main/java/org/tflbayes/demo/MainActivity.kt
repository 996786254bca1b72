package org.tflbayes.demo

import android.os.Bundle
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.ProgressBar
import android.widget.Spinner
import android.widget.TextView
import androidx.activity.viewModels
import androidx.appcompat.app.AppCompatActivity
import androidx.lifecycle.Lifecycle
import androidx.lifecycle.lifecycleScope
import androidx.lifecycle.repeatOnLifecycle
import kotlinx.coroutines.launch
import kotlin.math.ln

/** Draw a digit; see the class, the three uncertainties as bars, and "I don't know" when the bundle abstains. */
class MainActivity : AppCompatActivity() {
    private val vm: MainViewModel by viewModels()

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        val canvas = findViewById<DrawingView>(R.id.canvas)
        val spinner = findViewById<Spinner>(R.id.bundle)
        val answer = findViewById<TextView>(R.id.answer)
        val latency = findViewById<TextView>(R.id.latency)
        val bars = listOf(R.id.total, R.id.aleatoric, R.id.epistemic).map { findViewById<ProgressBar>(it) }

        canvas.onStrokeFinished = {
            val (h, w) = vm.inputSize()
            vm.classify(canvas.pixels(h, w))
        }
        findViewById<Button>(R.id.clear).setOnClickListener { canvas.clear() }
        val comparison = findViewById<TextView>(R.id.comparison)
        findViewById<Button>(R.id.compare).setOnClickListener {
            val (h, w) = vm.inputSize()
            vm.compareAll(canvas.pixels(h, w))
        }
        spinner.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(p: AdapterView<*>?, v: View?, position: Int, id: Long) {
                vm.select(spinner.adapter.getItem(position) as String)
            }
            override fun onNothingSelected(p: AdapterView<*>?) = Unit
        }

        lifecycleScope.launch {
            repeatOnLifecycle(Lifecycle.State.STARTED) {
                vm.state.collect { s ->
                    if (spinner.adapter?.count != s.bundles.size) {
                        spinner.adapter = ArrayAdapter(this@MainActivity, android.R.layout.simple_spinner_dropdown_item, s.bundles)
                    }
                    val r = s.result
                    answer.text = when {
                        s.error != null -> getString(R.string.error, s.error)
                        s.bundles.isEmpty() -> getString(R.string.no_bundles)
                        r == null -> getString(R.string.draw)
                        r.abstains -> getString(R.string.dont_know)
                        else -> r.decision
                    }
                    latency.text = if (r == null) "" else getString(R.string.latency, s.selected, r.latencyMs)
                    comparison.text = s.comparison.joinToString("\n") { (name, decision, ms) ->
                        getString(R.string.comparison_row, name, decision, ms)
                    }
                    // bars on the scale of the largest possible entropy, ln C
                    val max = ln(r?.uncertainty?.meanProbs?.size?.toDouble() ?: 10.0)
                    val values = listOf(r?.uncertainty?.total, r?.uncertainty?.aleatoric, r?.uncertainty?.epistemic)
                    bars.zip(values).forEach { (bar, v) -> bar.progress = if (v == null || v.isNaN()) 0 else (1000 * v / max).toInt() }
                }
            }
        }
    }
}
