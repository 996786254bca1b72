"""The last layer of a last-layer Laplace posterior: logit mean and logit variance in one pass.

With features ``phi [B, D]`` (the input of the network's last Dense layer), ``phi~ = [phi, 1]`` and
the Gaussian posterior ``N(theta*, Sigma)`` over the last layer's parameters ``theta = vec(W~)``,
``W~ = [W; b]`` of shape ``[D+1, C]`` (index ``d*C + c``), the logits ``f = W~ᵀ phi~`` are Gaussian
with mean ``W~*ᵀ phi~`` and covariance ``Sigma_f = J Sigma Jᵀ``, ``J = phi~ᵀ ⊗ I_C``. The layer
outputs ``[B, 2, C]``: row 0 the mean logits, row 1 the diagonal of ``Sigma_f``:

- ``structure="diag"``: ``Sigma = diag(v)``, ``v [D+1, C]``: ``var_c = sum_d phi~_d² v[d, c]``.
- ``structure="kron"`` (KFAC): ``Sigma = (A ⊗ G + delta I)^-1`` with ``A = U_A diag(a) U_Aᵀ``,
  ``G = U_G diag(g) U_Gᵀ``: ``var = ((phi~ U_A)² K) (U_G²)ᵀ``, ``K[i, j] = 1 / (a_i g_j + delta)``.

Everything is matmuls, squares and adds (LiteRT builtins, no random op). The fitted factors are
non-trainable weights, so the posterior folder stores them like any other weight.
"""
from __future__ import annotations

from tflbayes._keras import keras, register, tf
from tflbayes.errors import InvalidInputError

__all__ = ["LaplaceHead", "STRUCTURES"]

STRUCTURES = ("diag", "kron")


@register
class LaplaceHead(keras.layers.Layer):
    """``phi [B, D] -> [B, 2, C]``: mean logits and logit variances of a last-layer Laplace posterior.

    Args:
        units: C, the classes.
        structure: ``"diag"`` or ``"kron"`` (module docstring).

    Weights (all non-trainable, set by :func:`tflbayes.methods.laplace.fit_laplace`): ``kernel [D, C]``,
    ``bias [C]``; diag: ``variance [D+1, C]``; kron: ``eigvec_a [D+1, D+1]``, ``inv_eig [D+1, C]``,
    ``eigvec_g [C, C]``.
    """

    def __init__(self, units: int, structure: str = "kron", **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 2:
            raise InvalidInputError(f"Invalid value received for argument `units`. Expected an integer >= 2. Received: units={units!r}")
        if structure not in STRUCTURES:
            raise InvalidInputError(
                f"Invalid value received for argument `structure`. Expected one of {STRUCTURES}. Received: structure={structure!r}")
        self.units = int(units)
        self.structure = structure

    def build(self, input_shape):
        d, c = int(input_shape[-1]), self.units
        w = lambda name, shape: self.add_weight(name=name, shape=shape, initializer="zeros", trainable=False)  # noqa: E731
        self.kernel = w("kernel", (d, c))
        self.bias = w("bias", (c,))
        if self.structure == "diag":
            self.variance = w("variance", (d + 1, c))
        else:
            self.eigvec_a = w("eigvec_a", (d + 1, d + 1))
            self.inv_eig = w("inv_eig", (d + 1, c))
            self.eigvec_g = w("eigvec_g", (c, c))
        super().build(input_shape)

    def call(self, inputs):
        mean = tf.matmul(inputs, self.kernel) + self.bias
        if self.structure == "diag":
            d = int(inputs.shape[-1])
            var = tf.matmul(tf.square(inputs), self.variance[:d]) + self.variance[d]
        else:
            d = int(inputs.shape[-1])
            proj = tf.matmul(inputs, self.eigvec_a[:d]) + self.eigvec_a[d]  # phi~ U_A
            var = tf.matmul(tf.matmul(tf.square(proj), self.inv_eig), tf.transpose(tf.square(self.eigvec_g)))
        return tf.stack([mean, var], axis=1)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], 2, self.units])

    def temperature_weights(self):
        """``[(variable, power)]``: scaling these by ``(1/T)**power`` divides the logits by ``T``
        (the mean by T, the variances by T²)."""
        cov = [(self.variance, 2)] if self.structure == "diag" else [(self.inv_eig, 2)]
        return [(self.kernel, 1), (self.bias, 1), *cov]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "structure": self.structure}
