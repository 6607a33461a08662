"""funnel.optim: Funnel, hypergradient descent, Sadam/SAMSGrad and AdaGrad-EMA. Imports torch only."""
from .funnel import Funnel, FunnelSettings, funnel
from .hypergradient import AdamHD, SGDHD
from .inner import (
    AdagradEMAPreconditioner,
    AdagradPreconditioner,
    AdamPreconditioner,
    BUILTIN_PRECONDITIONERS,
    Preconditioner,
    RMSpropPreconditioner,
    SadamPreconditioner,
    SGDPreconditioner,
    TorchOptimizerPreconditioner,
)
from .preconditioned import AdagradEMA, PreconditionedOptimizer, SAMSGrad, Sadam
from .registry import REGISTRY, OptimizerSpec, build_optimizer, get_optimizer_spec
from .stats import optimizer_stats

__all__ = [
    "Funnel", "FunnelSettings", "funnel", "SGDHD", "AdamHD", "Sadam", "SAMSGrad", "AdagradEMA",
    "PreconditionedOptimizer",
    "Preconditioner", "SGDPreconditioner", "AdagradPreconditioner", "AdagradEMAPreconditioner", "AdamPreconditioner",
    "RMSpropPreconditioner", "SadamPreconditioner", "TorchOptimizerPreconditioner", "BUILTIN_PRECONDITIONERS",
    "REGISTRY", "OptimizerSpec", "build_optimizer", "get_optimizer_spec", "optimizer_stats",
]
