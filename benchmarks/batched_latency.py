"""Latency of mode ``batched`` (one invoke runs all S members) against S invokes of mode ``members``.

Converts an S-member ensemble of a built-in architecture for the digits data (8x8x1, 10 classes)
to LiteRT both ways and times them on the LiteRT CPU interpreter (XNNPACK, ``num_threads`` 1 by
default). Timings are interleaved: every round runs each candidate once, in a shuffled order, so
that drifts of the machine (other processes, frequency) hit all of them alike; the report gives
medians over the rounds after a warm-up. Two columns: "call" is what an app does per input (set the
input, invoke, read every output; the S member graphs do this S times), "invoke" is ``invoke()``
alone. Ratios are against the S member graphs run one after another.

Kernels are random initialisations and biases small random numbers (latency does not depend on the
values, but zero biases would be constant-folded away by the converter), so no training is needed.

Measured on 2 shared cores of an AMD EPYC (Zen 4) with ai-edge-litert 2.3, S=10, batch 1, one
thread, XNNPACK: digits CNN, batched with head ~52 us against ~85 us for 10 member calls (ratio
0.61-0.63; logits only 0.57-0.58; invoke() alone 0.72-0.74); MLP 0.43-0.46 (logits only 0.37).
Without XNNPACK (``--no-xnnpack``) the batched graph is *slower* than the members (CNN 1.65x:
the builtin CONV_2D runs grouped convolutions with its reference kernel).

Usage::

    python benchmarks/batched_latency.py                 # S=10, digits CNN, batch 1
    python benchmarks/batched_latency.py --arch mlp --members 5 --rounds 500
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from tflbayes._keras import keras, tf
from tflbayes.architectures import cnn, mlp
from tflbayes.bench.timing import SelfTimed, interleaved
from tflbayes.converters.graphs.chain import plan
from tflbayes.converters.graphs.batched import Layout, batched_logits, build_batched
from tflbayes.converters.graphs.members import build_member
from tflbayes.posterior import EnsemblePosterior
from ai_edge_litert.interpreter import Interpreter, OpResolverType

LAYOUTS = {
    "default": Layout(),
    "first dense broadcast BMM": Layout(first_dense="broadcast"),
    "flatten via TRANSPOSE+BMM": Layout(flatten_dense="transpose"),
    "dense as grouped 1x1 conv": Layout(dense="conv"),
}


def ensemble(arch: str, members: int, seed: int = 0) -> EnsemblePosterior:
    """An S-member ensemble of freshly initialised networks for 8x8x1 inputs, 10 classes."""
    keras.utils.set_random_seed(seed)
    build = {"cnn": cnn, "mlp": mlp}[arch]
    model = build((8, 8, 1), 10)
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(members):  # fresh kernels; non-zero biases (zero ones would be folded away)
        ws = keras.models.clone_model(model).get_weights()
        sets.append([w if w.ndim > 1 else (0.1 * rng.standard_normal(w.shape)).astype(np.float32) for w in ws])
    return EnsemblePosterior(model, sets, method="deep_ensemble")


def delegated_head(logits, tiny=1e-30):
    """The head of ``graphs.head`` without LOG_SOFTMAX (which XNNPACK does not run, so it splits
    the delegated graph in two): H[p] = -sum p log max(p, tiny). Measured here as a proposal."""
    p = tf.nn.softmax(logits, axis=-1)
    mean = tf.reduce_mean(p, axis=0)
    aleatoric = -tf.reduce_mean(tf.reduce_sum(p * tf.math.log(tf.maximum(p, tiny)), -1), 0)
    total = -tf.reduce_sum(mean * tf.math.log(tf.maximum(mean, tiny)), axis=-1)
    return {"probs": mean, "total": total, "aleatoric": aleatoric, "epistemic": tf.maximum(total - aleatoric, 0.0)}


def to_tflite(fn, trackable) -> bytes:
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], trackable)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return conv.convert()


class Runner:
    """One interpreter; ``__call__`` sets the input, invokes, and reads every output."""

    def __init__(self, content: bytes, threads: int, xnnpack: bool, latest: bool = False):
        kind = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.it = Interpreter(model_content=content, num_threads=threads, experimental_op_resolver_type=kind,
                              experimental_default_delegate_latest_features=latest)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]["index"]
        self.outs = [d["index"] for d in self.it.get_output_details()]
        self.ops = [o["op_name"] for o in self.it._get_ops_details()]

    def __call__(self, x):
        self.it.set_tensor(self.inp, x)
        self.it.invoke()
        return [self.it.get_tensor(i) for i in self.outs]

    def timed_invoke(self, x) -> float:
        """Seconds of ``invoke()`` alone (the input is set before the clock starts)."""
        self.it.set_tensor(self.inp, x)
        t0 = time.perf_counter()
        self.it.invoke()
        return time.perf_counter() - t0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=("cnn", "mlp"), default="cnn")
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=300, help="timed rounds (each runs every candidate once)")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffled order within each round")
    p.add_argument("--no-xnnpack", action="store_true", help="builtin kernels only (no default delegate)")
    p.add_argument("--latest", action="store_true",
                   help="XNNPACK's latest features (experimental_default_delegate_latest_features)")
    p.add_argument("--layouts", default="all", help="'all' or 'default'")
    args = p.parse_args(argv)

    post = ensemble(args.arch, args.members)
    xnn = not args.no_xnnpack
    cands = {}
    layouts = LAYOUTS if args.layouts == "all" else dict(list(LAYOUTS.items())[:1])
    for name, layout in layouts.items():
        cands[f"batched {name} +head"] = [Runner(to_tflite(build_batched(post, args.batch, layout=layout),
                                                           post.model), args.threads, xnn, args.latest)]
    steps = plan(post.model, post.members)
    spec = tf.TensorSpec([args.batch, *post.input_shape], tf.float32, name="x")
    alt = tf.function(lambda x: delegated_head(batched_logits(x, steps, args.members)), input_signature=[spec])
    cands["batched default +head w/o LOG_SOFTMAX"] = [
        Runner(to_tflite(alt, post.model), args.threads, xnn, args.latest)]
    cands["batched default, logits only"] = [
        Runner(to_tflite(build_batched(post, args.batch, head=False), post.model), args.threads, xnn, args.latest)]
    cands[f"{args.members} x member"] = [
        Runner(to_tflite(build_member(post, i, args.batch), post.model), args.threads, xnn, args.latest)
        for i in range(args.members)]

    x = np.random.default_rng(0).random((args.batch, 8, 8, 1), dtype=np.float32)
    fns = {}
    for k, runs in cands.items():
        fns[k, "call"] = lambda runs=runs: [run(x) for run in runs]  # set input + invoke + read outputs
        fns[k, "invoke"] = SelfTimed(lambda runs=runs: sum(run.timed_invoke(x) for run in runs))
    # shuffled every round: every timing follows some other candidate's run (no warm-cache bias)
    times = interleaved(fns, rounds=args.rounds, warmup=args.warmup, shuffle_seed=args.seed)
    calls = {k: times[k, "call"] for k in cands}
    invokes = {k: times[k, "invoke"] for k in cands}

    base = f"{args.members} x member"
    kernels = ("XNNPACK (latest features)" if args.latest else "XNNPACK") if xnn else "builtin kernels"
    print(f"{args.arch}, S={args.members}, batch={args.batch}, threads={args.threads}, {kernels}, "
          f"{args.rounds} interleaved rounds, medians:")
    print(f"  {'candidate':45s} {'call us':>9s} {'ratio':>6s} {'invoke us':>10s} {'ratio':>6s}")
    res = {}
    for k in cands:
        mc, mi = statistics.median(calls[k]), statistics.median(invokes[k])
        rc, ri = mc / statistics.median(calls[base]), mi / statistics.median(invokes[base])
        res[k] = {"call_us": mc * 1e6, "call_ratio": rc, "invoke_us": mi * 1e6, "invoke_ratio": ri}
        print(f"  {k:45s} {mc * 1e6:9.1f} {rc:6.3f} {mi * 1e6:10.1f} {ri:6.3f}")
    for k, rs in cands.items():
        print(f"  ops[{k}]: {' '.join(op for op in rs[0].ops if op != 'DELEGATE')}")
    return res


if __name__ == "__main__":
    main()
