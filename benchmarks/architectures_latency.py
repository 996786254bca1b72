"""Latency of the general batched / stochastic graphs on real edge architectures (LiteRT CPU).

Side by side, interleaved (``tflbayes.bench.timing``), batch 1, one thread, LiteRT's default CPU
kernels (XNNPACK), untrained weights (latency does not depend on their values):

- batched, S = 5 members: the general layout (one graph, one invoke, head in the graph) vs the
  5 member graphs invoked one after another (the head not even counted), vs the packed layout
  where the model is a chain it supports (the digits CNN and MLP; MobileNetV2 and the DS-CNN are
  not: residual Add / DepthwiseConv2D);
- stochastic, last-layer MC dropout (p = 0.25 on the pooled features): S = 16 samples in one invoke
  vs the S = 1 graph invoked 16 times.

Targets (issue "Every Keras model people ship converts in every mode"): batched <= 0.8 x the
sequential members; stochastic <= 0.3 x 16 invokes.

Run (about 3 minutes on 2 cores)::

    .venv/bin/python benchmarks/architectures_latency.py --out benchmarks/results/architectures_latency.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tflbayes as tb  # noqa: E402
from tflbayes._keras import keras  # noqa: E402
from tflbayes.architectures import builder  # noqa: E402
from tflbayes.bench.timing import interleaved, summarize  # noqa: E402
from tflbayes.converters.graphs.batched import build_batched  # noqa: E402
from tflbayes.converters.graphs.general import build_batched_general  # noqa: E402
from tflbayes.converters.graphs.members import build_member  # noqa: E402
from tflbayes.converters.graphs.stochastic_general import build_stochastic_general  # noqa: E402
from tflbayes.converters.tflite import to_tflite  # noqa: E402
from tflbayes.layers import MCDropout  # noqa: E402

MODELS = {  # name: (architecture, input shape, classes)
    "mobilenet_v2_a035": ("mobilenet_v2", (96, 96, 3), 10),
    "ds_cnn": ("ds_cnn", (49, 10, 1), 12),
    "digits_cnn": ("cnn", (8, 8, 1), 10),
    "digits_mlp": ("mlp", (8, 8, 1), 10),
}


def _runner(blob: bytes):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=blob, num_threads=1)
    it.allocate_tensors()
    inp = it.get_input_details()[0]["index"]

    def call(x):
        it.set_tensor(inp, x)
        it.invoke()

    return call


def _ensemble(arch, shape, classes, s):
    members = []
    for i in range(s):
        keras.utils.set_random_seed(i)
        m = builder(arch, shape, classes)()
        members.append(m.get_weights())
    return tb.EnsemblePosterior(m, members)


def _last_layer_dropout(arch, shape, classes, s):
    keras.utils.set_random_seed(0)
    base = builder(arch, shape, classes)()
    feats = base.get_layer("logits").input
    out = keras.layers.Dense(classes)(MCDropout(0.25)(feats))
    return tb.StochasticPosterior(keras.Model(base.input, out), "mc_dropout", {"num_samples": s})


def _ratio(t, a, b):
    return round(t[a]["median_ms"] / t[b]["median_ms"], 3)


def bench_batched(name, s, rounds):
    arch, shape, classes = MODELS[name]
    post = _ensemble(arch, shape, classes, s)
    x = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
    general = _runner(to_tflite(build_batched_general(post, 1, head=True, member_probs=True), post.model, "float32"))
    members = [_runner(to_tflite(build_member(post, i), post.model, "float32")) for i in range(s)]
    fns = {"general": lambda: general(x), "sequential_members": lambda: [m(x) for m in members]}
    if arch in ("cnn", "mlp"):  # chains the packed layout takes
        packed = _runner(to_tflite(build_batched(post, 1, head=True, member_probs=True), post.model, "float32"))
        fns["packed"] = lambda: packed(x)
    t = {k: summarize(v) for k, v in interleaved(fns, rounds=rounds).items()}
    out = {"num_samples": s, "input_shape": list(shape), "timings": t,
           "general_over_sequential": _ratio(t, "general", "sequential_members")}
    if "packed" in t:
        out["packed_over_general"] = _ratio(t, "packed", "general")
        out["packed_over_sequential"] = _ratio(t, "packed", "sequential_members")
    return out


def bench_stochastic(name, s, rounds):
    arch, shape, classes = MODELS[name]
    post = _last_layer_dropout(arch, shape, classes, s)
    x = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
    one, _ = build_stochastic_general(post, s, 1)
    single, _ = build_stochastic_general(post, 1, 1)
    one_r, single_r = _runner(to_tflite(one, post.model, "float32")), _runner(to_tflite(single, post.model, "float32"))
    fns = {f"one_invoke_S{s}": lambda: one_r(x), f"{s}_invokes_S1": lambda: [single_r(x) for _ in range(s)]}
    t = {k: summarize(v) for k, v in interleaved(fns, rounds=rounds).items()}
    return {"num_samples": s, "input_shape": list(shape), "timings": t,
            "one_over_repeated": _ratio(t, f"one_invoke_S{s}", f"{s}_invokes_S1")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/architectures_latency.json")
    ap.add_argument("--rounds", type=int, default=100)
    args = ap.parse_args()
    res = {"batched_S5": {}, "stochastic_S16": {}}
    for name in MODELS:
        res["batched_S5"][name] = bench_batched(name, 5, args.rounds)
        print(name, "batched", json.dumps({k: v for k, v in res["batched_S5"][name].items() if k != "timings"}))
    for name in ("mobilenet_v2_a035", "ds_cnn"):
        res["stochastic_S16"][name] = bench_stochastic(name, 16, args.rounds)
        print(name, "stochastic", res["stochastic_S16"][name]["one_over_repeated"])
    res["targets"] = {"batched_over_sequential": 0.8, "stochastic_over_16_invokes": 0.3}
    res["machine"] = {"python": platform.python_version(), "cpu_count": os.cpu_count(), "threads": 1,
                      "note": "shared 2-core machine; interleaved rounds so load hits every variant alike"}
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
