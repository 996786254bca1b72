"""Latency of mode ``stochastic``: S samples in one invoke vs S invokes of a one-sample graph.

For each posterior of the digits CNN (MC dropout and VI, whole network and last layer) this builds
with :func:`~tflbayes.converters.graphs.stochastic.build_stochastic`:

- ``one``: the S-sample graph with the uncertainty head (what ships), one invoke per prediction;
- ``loop``: the one-sample graph without head (logits only), invoked S times per prediction;
- ``tiled`` (``--tiled``): the naive S-sample graph that tiles the input to ``[S*B, ...]`` and runs
  the Keras model itself, plus the same head (MC dropout / VI in Keras's own ops).

and times them interleaved (:func:`tflbayes.bench.timing.interleaved`: one repetition of each per
round, ``--reps`` rounds after ``--warmup``), reporting medians and the ratio ``one / loop``. A
prediction's time is ``set_tensor`` + invoke(s) + reading every output, on the LiteRT interpreter
(``ai_edge_litert``) with ``--threads`` threads, with the default delegate (XNNPACK) or without
(``--resolver``). Targets (digits CNN, batch 1, one thread): ratio <= 0.6 for MC dropout on the
whole network, <= 0.25 on the last layer.

``--profile`` adds ablations: the S-sample graph's random ops alone (same shapes), to show what the
reference-kernel random number generators cost; for MC dropout, the same network without its dropout
layers (``det``: prefix once, then S rows; ``det_loop``: S invokes of batch 1), the compute floor of the
ratio.

Run:  .venv/bin/python benchmarks/stochastic_latency.py [--reps 300] [--resolver both]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

import tflbayes as tb
from tflbayes._keras import tf
from tflbayes.architectures import cnn
from tflbayes.bench.timing import interleaved
from tflbayes.converters.graphs.head import head_from_logits
from tflbayes.converters.graphs.stochastic import build_stochastic

# name -> (tb.fit options, build_stochastic options). VI is trained with Flipout (the default), so
# conv_sampling="auto" draws whole kernels for its convolutions; "+lrt" forces LRT there.
CASES = {
    "mc_dropout/all": (dict(method="mc_dropout", layers="all"), {}),
    "mc_dropout/last": (dict(method="mc_dropout", layers="last"), {}),
    # a rate that is not k / 2**m: one uniform per mask (no packing)
    "mc_dropout/all@0.1": (dict(method="mc_dropout", layers="all", rate=0.1), {}),
    "variational/all": (dict(method="variational", layers="all"), {}),
    "variational/all+lrt": (dict(method="variational", layers="all"),
                            {"conv_sampling": "local_reparameterization"}),
    "variational/last": (dict(method="variational", layers="last"), {}),
}
TARGETS = {"mc_dropout/all": 0.6, "mc_dropout/last": 0.25}


def convert(fn, model) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def tiled_graph(posterior, num_samples: int, batch_size: int = 1):
    """The naive graph: tile x to [S*B, ...] and run the stochastic Keras model on it."""
    shape = [batch_size, *posterior.input_shape]
    model = posterior.model

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="x")])
    def tiled(x):
        rows = tf.tile(x, [num_samples] + [1] * (len(shape) - 1))
        logits = model(rows, training=False)
        return head_from_logits(tf.reshape(logits, [num_samples, batch_size, -1]))

    return tiled


def deterministic_graph(posterior, num_samples: int, batch_size: int = 1):
    """MC dropout's compute floor: the same layers and tiling, the MCDropout layers removed."""
    from tflbayes.converters.graphs.walk import chain_layers
    from tflbayes.layers import MCDropout

    shape = [batch_size, *posterior.input_shape]
    layers = chain_layers(posterior.model)

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="x")])
    def det(x):
        h, tiled = x, False
        for layer in layers:
            if isinstance(layer, MCDropout):
                if not tiled and num_samples > 1:
                    h = tf.tile(h, [num_samples] + [1] * (h.shape.rank - 1))
                tiled = True
                continue
            h = layer(h, training=False)
        return {"logits": h}

    return det


class Runner:
    """One interpreter: ``__call__`` sets x, invokes ``invokes`` times, reads the outputs each time."""

    def __init__(self, model_content: bytes, x, resolver: str, threads: int, invokes: int = 1):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kinds = {"xnnpack": OpResolverType.AUTO, "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        self.it = Interpreter(model_content=model_content, num_threads=threads,
                              experimental_op_resolver_type=kinds[resolver])
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]["index"]
        self.outs = [d["index"] for d in self.it.get_output_details()]
        self.invokes = invokes
        self.x = x
        self.ops = [op["op_name"] for op in self.it._get_ops_details()]

    def __call__(self):
        it = self.it
        it.set_tensor(self.inp, self.x)
        for _ in range(self.invokes):
            it.invoke()
            for o in self.outs:
                it.get_tensor(o)


def rng_only_graph(content: bytes, num_samples: int):
    """A graph with only the random ops of ``content`` (same shapes), each reduced to one number."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=content,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    details = it.get_tensor_details()
    shapes = []
    for op in it._get_ops_details():
        if op["op_name"] in ("RANDOM_UNIFORM", "RANDOM_STANDARD_NORMAL"):
            shapes.append((op["op_name"], tuple(details[op["outputs"][0]]["shape"])))

    @tf.function(input_signature=[tf.TensorSpec([1], tf.float32, name="x")])
    def rng(x):
        total = x
        for name, shape in shapes:
            op = tf.raw_ops.RandomUniform if name == "RANDOM_UNIFORM" else tf.raw_ops.RandomStandardNormal
            total = total + tf.reduce_sum(op(shape=shape, dtype=tf.float32))
        return {"sum": total}

    return rng, shapes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resolver", choices=("xnnpack", "builtin", "both"), default="both")
    ap.add_argument("--cases", nargs="*", default=[c for c in CASES if "@" not in c], choices=list(CASES))
    ap.add_argument("--tiled", action="store_true", help="also time the naive input-tiling graph")
    ap.add_argument("--profile", action="store_true",
                    help="also time the random ops alone and (MC dropout) the deterministic compute floor")
    ap.add_argument("--json", help="write the rows to this JSON file")
    args = ap.parse_args(argv)
    s = args.samples
    resolvers = ("xnnpack", "builtin") if args.resolver == "both" else (args.resolver,)

    ds = tb.data.load("digits")
    x = ds.x_test[:1].astype(np.float32)
    rows = []
    trained = {}
    for case in args.cases:
        fit_options, build_options = CASES[case]
        key = tuple(sorted(fit_options.items()))
        if key not in trained:
            trained[key] = tb.fit(lambda: cnn(ds.x_train.shape[1:], 10), (ds.x_train, ds.y_train),
                                  epochs=args.epochs, verbose=0, **fit_options)
        post = trained[key]
        graphs = {
            "one": convert(build_stochastic(post, s, head=True, **build_options), post.model),
            "loop": convert(build_stochastic(post, 1, head=False, **build_options), post.model),
        }
        if args.tiled:
            graphs["tiled"] = convert(tiled_graph(post, s), post.model)
        if args.profile:
            rng, shapes = rng_only_graph(graphs["one"], s)
            graphs["rng"] = convert(rng, post.model)
            if post.method == "mc_dropout":
                graphs["det"] = convert(deterministic_graph(post, s), post.model)
                graphs["det_loop"] = convert(deterministic_graph(post, 1), post.model)
        for resolver in resolvers:
            runners = {n: Runner(b, np.ones([1], np.float32) if n == "rng" else x, resolver, args.threads,
                                 invokes=s if n.endswith("loop") else 1)
                       for n, b in graphs.items()}
            times = interleaved(runners, rounds=args.reps, warmup=args.warmup)
            med = {n: float(np.median(t)) for n, t in times.items()}
            row = {"case": case, "resolver": resolver, **{f"{n}_us": 1e6 * v for n, v in med.items()}}
            row["ratio"] = med["one"] / med["loop"]
            if "tiled" in med:
                row["tiled_ratio"] = med["tiled"] / med["loop"]
            if "det" in med:
                row["det_ratio"] = med["det"] / med["det_loop"]
            rows.append(row)
            target = TARGETS.get(case)
            verdict = "" if target is None else (f"  target <= {target}: " + ("met" if row["ratio"] <= target else "MISSED"))
            extra = "".join(f"  {n}={1e6 * med[n]:.1f}us" for n in med if n not in ("one", "loop"))
            print(f"{case:18s} {resolver:8s} one(S={s})={1e6 * med['one']:8.1f}us  "
                  f"loop({s}x S=1)={1e6 * med['loop']:8.1f}us  ratio={row['ratio']:.3f}"
                  + "".join(f"  {k}={row[k]:.3f}" for k in ("tiled_ratio", "det_ratio") if k in row)
                  + extra + verdict,
                  flush=True)
            if args.profile and resolver == resolvers[0]:
                print("    ops(one):", " ".join(runners["one"].ops))
                print("    random ops:", shapes)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
        print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
