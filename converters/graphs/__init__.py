"""TF graph builders: a Posterior -> a tf.function whose LiteRT conversion uses builtin ops only.

Contract of every builder: ``build_*(posterior, batch_size, ...) -> tf.function`` with one input
``x`` of static shape ``[batch_size, *input_shape]`` float32, returning a dict of named outputs
(``logits`` ``[S, B, C]`` for a body without head; with the head: ``probs`` ``[B, C]``, ``total``,
``aleatoric``, ``epistemic`` ``[B]`` and optionally ``member_probs`` ``[S, B, C]``).
"""
