"""Compression of posteriors: pruning (per member, shared mask, SNR, structured, 2:4) and QAT.

Example:
    >>> import tflbayes as tb
    >>> sparse = tb.compress.prune(post, sparsity=0.9, method="magnitude")       # doctest: +SKIP
    >>> tb.compress.sparsity(sparse)                                             # doctest: +SKIP
    {'overall': 0.9, 'layers': {'dense': 0.9, 'logits': 0.9}, 'kernels': {...}, 'skipped': {}}
    >>> q = tb.compress.quantization_aware(post, data=(x, y))                    # doctest: +SKIP
    >>> tb.convert(q, "out", precision="int8", representative_data=x[:300])      # doctest: +SKIP
"""
from tflbayes.compress.litert import SPARSITY_OPTIMIZATION, sparse_member_tflite, sparse_members
from tflbayes.compress.prune import METHODS, SCOPES, prune, sparsity
from tflbayes.compress.qat import quantization_aware
from tflbayes.compress.structured import GroupLasso

__all__ = [
    # entry points
    "prune", "sparsity", "quantization_aware",
    # choices
    "METHODS", "SCOPES",
    # building blocks
    "GroupLasso",
    # LiteRT's own sparse format (the per-member baseline for members bundles)
    "SPARSITY_OPTIMIZATION", "sparse_member_tflite", "sparse_members",
]
