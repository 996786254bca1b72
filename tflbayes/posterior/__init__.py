"""The Posterior spine: what every method makes and every later stage consumes."""
from tflbayes.posterior.base import Posterior
from tflbayes.posterior.dirichlet import DirichletPosterior
from tflbayes.posterior.distilled import DistilledPosterior
from tflbayes.posterior.ensemble import EnsemblePosterior
from tflbayes.posterior.merge import merge
from tflbayes.posterior.stochastic import StochasticPosterior
from tflbayes.posterior.single_pass import SinglePassPosterior
from tflbayes.posterior.laplace import LaplacePosterior
from tflbayes.posterior.storage import load

__all__ = ["Posterior", "EnsemblePosterior", "StochasticPosterior", "DirichletPosterior", "DistilledPosterior",
           "SinglePassPosterior", "LaplacePosterior", "load", "merge"]
