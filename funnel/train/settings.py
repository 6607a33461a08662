"""The trainer's settings, typed and checked before a run writes anything: a misspelled key, a batch of 0 or a run of
0 epochs stops at once with a message naming the setting, instead of training nothing and reporting "finished"."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf


@dataclass(frozen=True)
class TrainerSettings:
    """configs/trainer/default.yaml, key by key (its comments say what each does)."""

    batch_size: int
    eval_batch_size: int
    epochs: int
    max_steps: int | None
    drop_last: bool
    log_every: int
    eval_every: int | None
    eval_at_start: bool
    checkpoint_every: int
    resume: bool
    device: str
    dtype: str
    bf16: bool
    compile: bool
    deterministic: bool
    num_workers: int
    gain_samples: int
    bn_recompute_batches: int
    histogram_every: int
    progress_bar: bool
    objective: str | None
    diverge_factor: float | None
    ddp_timeout_s: float

    # (key, smallest allowed value): counts that must be positive, and those that may be 0
    AT_LEAST = {"batch_size": 1, "eval_batch_size": 1, "epochs": 1, "max_steps": 1, "log_every": 1, "eval_every": 1,
                "checkpoint_every": 0, "num_workers": 0, "gain_samples": 0, "bn_recompute_batches": 1,
                "histogram_every": 0, "diverge_factor": 1, "ddp_timeout_s": 1}

    @classmethod
    def check(cls, trainer: DictConfig) -> TrainerSettings:
        """The settings of `trainer`, or a ValueError naming each unknown key or bad value and what it must be."""
        values = OmegaConf.to_container(trainer, resolve=True)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"unknown trainer setting(s) {unknown} (a typo, or a '+' key the trainer does not read); "
                             f"valid: {', '.join(names)}")
        missing = sorted(set(names) - set(values))
        if missing:
            raise ValueError(f"trainer settings {missing} are missing: configs/trainer/default.yaml sets them all")
        problems = [problem for f in dataclasses.fields(cls) if (problem := _check(f, values[f.name]))]
        if problems:
            raise ValueError("invalid trainer settings: " + "; ".join(problems))
        return cls(**values)


def _check(field: dataclasses.Field, value) -> str | None:
    kinds = {"int": int, "float": (int, float), "bool": bool, "str": str}
    optional = "None" in field.type
    if value is None:
        return None if optional else f"trainer.{field.name} must be set"
    kind = kinds[field.type.split(" |")[0]]
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        return f"trainer.{field.name}={value!r} must be of type {field.type}"
    least = TrainerSettings.AT_LEAST.get(field.name)
    if least is not None and value < least:
        return f"trainer.{field.name}={value!r} must be >= {least}"
    return None
