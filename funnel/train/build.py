"""What a run is built from: Hydra's instantiate with errors a user can act on, the model checked against its
data, the parameter dtype, and the seeds."""
from __future__ import annotations

import inspect
import random

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf

from funnel.data.base import TaskData
from funnel.optim.registry import REGISTRY


def instantiate(cfg, **kwargs):
    """hydra's instantiate, re-raising the errors a user can act on (a bad value, missing files or packages) as they are
    instead of wrapped in Hydra's InstantiationException."""
    try:
        return hydra_instantiate(cfg, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, (ValueError, FileNotFoundError, ImportError)):
            raise cause from None
        if isinstance(cause, TypeError) and "unexpected keyword argument" in str(cause):
            # e.g. experiment=quick dataset=cifar10: the experiment sets dataset.base, which CIFAR-10 has no use for
            raise ValueError(f"{cfg.get('_target_')} {str(cause).split(' ', 1)[-1]}: a setting of the config (or of "
                             "the experiment, which may set keys for another option of the group) that this "
                             "option does not take; remove it, or pick the option the experiment was made "
                             "for") from None
        raise


def build_optimizer(optimizer_cfg: DictConfig, params) -> torch.optim.Optimizer:
    """The configured optimizer over `params`. A key its constructor does not take (a typo such as
    +optimizer.gama_p, or an arm's Funnel settings left over after optimizer=adagrad) is a ValueError that names the
    key and the keys it takes."""
    make = instantiate(optimizer_cfg)
    try:
        return make(params)
    except TypeError as err:
        if "unexpected keyword argument" not in str(err):
            raise
        key = str(err).rsplit("argument", 1)[-1].strip(" '\"")
        chosen = optimizer_cfg.get("name") or optimizer_cfg.get("_target_")
        spec = REGISTRY.get(optimizer_cfg.get("name") or "")  # a registry builder: the class's own settings
        try:
            signature = spec.signature() if spec else inspect.signature(getattr(make, "func", make))
            takes = [n for n, p in signature.parameters.items()
                     if n not in ("self", "params") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        except (TypeError, ValueError, ImportError):
            takes = []
        raise ValueError(f"optimizer.{key} is not a setting of {chosen}" + (f" (it takes: {', '.join(takes)})"
                         if takes else "") + ": a misspelled key, or one that an arm or experiment sets for another "
                         "optimizer (a Funnel arm's gammas under optimizer=adagrad); fix or remove the key, or pick "
                         "the optimizer that arm was made for") from None


def build_model(model_cfg: DictConfig, data: TaskData) -> torch.nn.Module:
    """The configured model for `data`'s inputs and classes, with a clear error when the two do not fit."""
    from_data = {"num_classes": data.num_classes, "input_shape": list(data.input_shape)}
    for key, value in from_data.items():
        given = model_cfg.get(key)
        given = OmegaConf.to_object(given) if OmegaConf.is_config(given) else given
        if given is not None and given != value:
            raise ValueError(f"model.{key}={given} but dataset {data.name} gives {value}: remove the override")
    model = instantiate(model_cfg, num_classes=data.num_classes, input_shape=data.input_shape)
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *data.input_shape))
    except Exception as err:
        raise ValueError(f"model {model_cfg._target_} cannot take dataset {data.name}'s inputs of shape "
                         f"{data.input_shape}: {err}") from err
    if tuple(out.shape) != (2, data.num_classes):
        raise ValueError(f"model {model_cfg._target_} gives outputs of shape {tuple(out.shape[1:])} for dataset "
                         f"{data.name}, which has {data.num_classes} classes")
    return model.train()


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def parameter_dtype(name: str) -> torch.dtype:
    """`trainer.dtype`: the dtype of the model's parameters, its inputs and so of the optimizer state."""
    if name not in DTYPES:
        raise ValueError(f"trainer.dtype={name!r} is not one of {sorted(DTYPES)} (for bf16, set trainer.bf16=true)")
    return DTYPES[name]


def loss_dtype(dtype: torch.dtype) -> torch.dtype:
    """Logits are upcast to at least fp32 for the loss (bf16 autocast gives bf16 logits); fp64 stays fp64."""
    return torch.promote_types(dtype, torch.float32)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
