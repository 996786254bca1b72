package org.tflbayes.demo

import android.app.Application
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/** Holds the selected bundle and the last result; inference runs off the main thread. */
class MainViewModel(app: Application) : AndroidViewModel(app) {
    data class UiState(
        val bundles: List<String> = emptyList(),
        val selected: String? = null,
        val result: BundleClassifier.Result? = null,
        val error: String? = null,
        /** The last drawing on every bundle: name -> (decision, latency ms). */
        val comparison: List<Triple<String, String, Double>> = emptyList(),
    )

    private val assets = app.assets
    private val _state = MutableStateFlow(UiState(bundles = BundleClassifier.available(assets)))
    val state: StateFlow<UiState> = _state
    private var classifier: BundleClassifier? = null

    init {
        _state.value.bundles.firstOrNull()?.let { select(it) }
    }

    fun select(name: String) {
        viewModelScope.launch {
            val next = withContext(Dispatchers.IO) { runCatching { BundleClassifier(assets, name) } }
            classifier?.close()
            classifier = next.getOrNull()
            _state.value = _state.value.copy(selected = name, result = null, error = next.exceptionOrNull()?.message)
        }
    }

    fun classify(pixels: FloatArray) {
        val c = classifier ?: return
        viewModelScope.launch {
            val r = withContext(Dispatchers.Default) { runCatching { c.classify(pixels) } }
            _state.value = _state.value.copy(result = r.getOrNull(), error = r.exceptionOrNull()?.message)
        }
    }

    /** Runs the drawing through every bundle in the assets, to compare their answers and latencies. */
    fun compareAll(pixels: FloatArray) {
        viewModelScope.launch {
            val rows = withContext(Dispatchers.Default) {
                _state.value.bundles.mapNotNull { name ->
                    runCatching {
                        BundleClassifier(assets, name).use { c ->
                            c.classify(pixels)  // warm-up: the first invoke allocates
                            val r = c.classify(pixels)
                            Triple(name, r.decision, r.latencyMs)
                        }
                    }.getOrNull()
                }
            }
            _state.value = _state.value.copy(comparison = rows)
        }
    }

    fun inputSize(): Pair<Int, Int> = classifier?.inputSize ?: (8 to 8)

    override fun onCleared() {
        classifier?.close()
    }
}
