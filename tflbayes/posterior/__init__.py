"""The Posterior spine: what every method makes and every later stage consumes."""
from tflbayes.posterior.base import Posterior
from tflbayes.posterior.dirichlet import DirichletPosterior
from tflbayes.posterior.distilled import DistilledPosterior
from tflbayes.posterior.ensemble import EnsemblePosterior
from tflbayes.posterior.merge import merge
from tflbayes.posterior.stochastic import StochasticPosterior
from tflbayes.posterior.storage import load

__all__ = ["Posterior", "EnsemblePosterior", "StochasticPosterior", "DirichletPosterior", "DistilledPosterior",
           "load", "merge"]
