"""Uncertainty decomposition: the one numpy reference (no TensorFlow).

total = H[E_s p_s]  (entropy of the posterior predictive)
aleatoric = E_s H[p_s]  (expected data uncertainty)
epistemic = total - aleatoric  (mutual information between the label and the parameters)

Equation (3) of the survey (Depeweg et al. 2018). All values are in nats.
"""
from tflbayes.uncertainty.decompose import (
    Prediction,
    decompose,
    dirichlet_decompose,
    entropy,
    prediction_from_samples,
)

__all__ = ["Prediction", "decompose", "dirichlet_decompose", "entropy", "prediction_from_samples"]
