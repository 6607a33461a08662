"""funnel: step-size adaptation by exponentiated-gradient updates (Funnel), hypergradient descent and Sadam,
with the runner and experiments that reproduce their papers. The optimizers live in `funnel.optim`."""
__version__ = "0.1.0"
