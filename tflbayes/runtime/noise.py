"""Noise inputs: graphs that take their random numbers as inputs get them from the bundle's PRNG.

A stochastic micro bundle (``tb.convert(..., mode="stochastic", target="micro")``) has no random op:
every dropout mask / weight-noise tensor is a graph input whose tensor-map entry says its
``distribution`` (``"uniform"`` in [0, 1) or ``"normal"``). :class:`NoiseFilled` wraps a LiteRT
graph of such a file so the pipeline only feeds the data inputs; the noise comes from the bundle's
:class:`~tflbayes.uncertainty.prng.Xoshiro128` (the C library's ``tb_rng_*`` stream), filled in
input order, as the device does. TFLite Micro graphs (:class:`~tflbayes.runtime.tflm.TflmGraph`)
fill their noise themselves.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["noise_entries", "NoiseFilled", "with_noise"]


def noise_entries(manifest: dict, file: str) -> list:
    """The noise inputs of ``file`` (tensor-map entries with a ``distribution``), in input order."""
    from tflbayes.runtime.manifest import stage_files

    for st in manifest.get("stages", []):
        tmap = st.get("tensors") if isinstance(st.get("tensors"), dict) else None
        if tmap and file in stage_files(st) and file in tmap:
            return [e for e in tmap[file]["inputs"] if e.get("distribution")]
    return []


class NoiseFilled:
    """A graph (``inputs`` / ``outputs`` / ``__call__(**values)``) whose noise inputs are filled from ``rng``."""

    def __init__(self, graph, entries: list, rng):
        self.graph, self.entries, self.rng = graph, entries, rng
        names = {e["name"] for e in entries}
        self.inputs = {k: v for k, v in graph.inputs.items() if k not in names}
        self.outputs = graph.outputs
        self.interpreter = getattr(graph, "interpreter", None)

    def __call__(self, **values) -> dict:
        for e in self.entries:
            values[e["name"]] = self.rng.fill(e["distribution"], e["shape"])
        return self.graph(**values)


def with_noise(graph, manifest: dict, path, rng):
    """``graph`` itself, or a :class:`NoiseFilled` wrapper where its file has noise inputs."""
    if isinstance(graph, NoiseFilled):  # already filled: never draw twice per invoke
        return graph
    entries = noise_entries(manifest, Path(path).name)
    return NoiseFilled(graph, entries, rng) if entries else graph
