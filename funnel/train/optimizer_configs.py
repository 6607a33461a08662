"""Write configs/optimizer/<name>.yaml for every optimizer in funnel.optim.REGISTRY.

Each config exposes every hyperparameter of the class (the registry's defaults over the class's), so that a sweep
can override any of them: `python run.py -m optimizer=funnel_momentum optimizer.gamma_p=1e-5,1e-4,1e-3`.
Run it after changing the registry (`python -m funnel.train.optimizer_configs`); tests/configs checks that the
configs match the registry.
"""
from __future__ import annotations

import inspect
from pathlib import Path

from funnel.optim import REGISTRY

SKIP = {"params", "maximize", "capturable", "differentiable", "decoupled_weight_decay", "fsdp_in_use", "log_every"}
OUT = Path(__file__).resolve().parents[2] / "configs" / "optimizer"


def yaml_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value in (float("inf"), float("-inf")):  # YAML spells infinity .inf; "inf" would be a string
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:  # YAML 1.1 reads 1e-4 as a string
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    return str(value)


def config_text(name: str) -> str:
    spec = REGISTRY[name]
    cls = spec.resolve()
    # _convert_: plain lists and dicts, never OmegaConf containers, end up in param groups and checkpoints
    lines = [f"# {spec.description}  (funnel.optim.REGISTRY['{name}'])"]
    if isinstance(spec.cls, str):  # an optional package: built through the registry, which names the missing extra
        lines += ["# needs: pip install -e '.[peers]'", "_target_: funnel.optim.build_optimizer", "_partial_: true",
                  "_convert_: all", f"name: {name}"]
    else:
        package = "torch.optim" if cls.__module__.startswith("torch.optim") else "funnel.optim"
        lines += [f"_target_: {package}.{cls.__qualname__}", "_partial_: true", "_convert_: all"]
    for param in spec.signature().parameters.values():
        if param.name in SKIP | {"self"} or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        value = spec.defaults.get(param.name, param.default)
        if value is inspect.Parameter.empty:
            raise ValueError(f"{name}: no value for required argument {param.name}")
        lines.append(f"{param.name}: {yaml_value(value)}")
    return "\n".join(lines) + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in REGISTRY:
        (OUT / f"{name}.yaml").write_text(config_text(name))
        print(OUT / f"{name}.yaml")


if __name__ == "__main__":
    main()
