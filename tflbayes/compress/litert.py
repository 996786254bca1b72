"""LiteRT's own sparse tensor format for ``members`` bundles (the per-member baseline).

``tf.lite.Optimize.EXPERIMENTAL_SPARSITY`` makes the converter store sparse constant weights in
the flatbuffer's sparse format (per-dimension dense / CSR metadata + values; the index arrays use
the narrowest integer type) and insert DENSIFY ops, or use the sparse FULLY_CONNECTED kernels.
Each member's file holds its own indices, so S members pay ``O(3NS)``-like storage; compare with
the shared-mask ``batched`` layout (:mod:`tflbayes.converters.graphs.batched`).

Example:
    >>> blobs = sparse_members(sparse_ens)         # doctest: +SKIP
    >>> sum(len(b) for b in blobs.values())        # doctest: +SKIP
"""
from __future__ import annotations

from tflbayes._keras import tf
from tflbayes._checks import check_posterior
from tflbayes.errors import ConversionError

__all__ = ["SPARSITY_OPTIMIZATION", "sparse_member_tflite", "sparse_members", "convert_sparse"]

SPARSITY_OPTIMIZATION = tf.lite.Optimize.EXPERIMENTAL_SPARSITY


def convert_sparse(fn, trackable) -> bytes:
    """A traced ``tf.function`` -> float32 LiteRT flatbuffer with sparse weights, builtins only."""
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], trackable)
    conv.optimizations = [SPARSITY_OPTIMIZATION]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        return conv.convert()
    except Exception as e:  # ConverterError carries the MLIR diagnostics
        raise ConversionError(f"LiteRT sparse conversion failed: {str(e).strip().splitlines()[0][:500]}") from None


def sparse_member_tflite(posterior, i: int, batch_size: int = 1) -> bytes:
    """Member ``i`` of an ensemble as a float32 LiteRT file in the sparse tensor format."""
    from tflbayes.converters.graphs.members import build_member

    return convert_sparse(build_member(posterior, i, batch_size=batch_size), posterior.model)


def sparse_members(posterior, batch_size: int = 1) -> dict:
    """``{"member_000.tflite": bytes, ...}``: every member in the sparse tensor format."""
    check_posterior(posterior)
    return {f"member_{i:03d}.tflite": sparse_member_tflite(posterior, i, batch_size)
            for i in range(posterior.num_samples)}
