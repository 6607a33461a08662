"""Checkpoints written atomically (a crash mid-write never leaves a truncated file behind) and read back with
torch.load(weights_only=True): they hold only tensors, numbers, strings and containers."""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from funnel.optim.registry import REGISTRY
from funnel.train.console import say

LAST = "checkpoints/last.pt"
PREVIOUS = "checkpoints/previous.pt"  # kept until the next one is complete


def save(path: str | Path, payload: dict) -> None:
    """`payload` to `path`, whole or not at all: written beside it, then renamed over it; the checkpoint it replaces
    is kept as previous.pt."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(payload, tmp)
    except (RuntimeError, OSError) as err:  # a full disk shows as torch's "unexpected pos ..." RuntimeError
        tmp.unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free / 1e6
        kept = "the previous checkpoint is intact" if path.exists() else "the run has no earlier checkpoint"
        raise OSError(f"could not write the checkpoint {tmp} ({type(err).__name__}: {str(err).splitlines()[0]}); "
                      f"{free:.1f} MB are free on that disk; {kept}") from None
    if path.exists():
        os.replace(path, path.with_name(Path(PREVIOUS).name))
    os.replace(tmp, path)


def load(path: str | Path, map_location=None) -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def load_latest(run_dir: Path, map_location=None) -> tuple[dict, Path] | None:
    """The newest readable checkpoint of a run directory and its path: last.pt, or previous.pt (with a notice)
    when last.pt is missing or unreadable (a crash between the renames, a truncated copy, a full disk); None if
    the run has no checkpoint. A ValueError, saying how to start over, when neither can be read."""
    errors = []
    for name in (LAST, PREVIOUS):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            ck = load(path, map_location)
        except Exception as err:  # torch and zipfile raise many kinds for a damaged file
            errors.append(f"{path.name}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            continue
        if errors:
            say(f"{run_dir / LAST} is unreadable ({errors[0]}); resuming from {path.name} (step {ck['step']})")
        return ck, path
    if errors:
        raise ValueError(f"no readable checkpoint in {run_dir / 'checkpoints'} ({'; '.join(errors)}): delete that "
                         "folder to train the run again from the start, or run with trainer.resume=false")
    return None


def rng_state() -> dict:
    _, mt_state, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": list(mt_state), "python_gauss": gauss_next}
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state["numpy"] = {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                      "gauss": float(gauss)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def refuse_unresumable(optimizer_cfg: DictConfig, ckpt_path: Path) -> None:
    """A registry optimizer whose state does not survive a checkpoint is never resumed: it would silently train on
    from a different state than an uninterrupted run."""
    spec = REGISTRY.get(optimizer_cfg.get("name") or "")
    if spec is not None and spec.cannot_resume:
        raise ValueError(f"{ckpt_path} is a checkpoint of optimizer {spec.name!r}, which cannot be resumed: "
                         f"{spec.cannot_resume}. Delete {ckpt_path.parent} to train the run again from the start.")


# Settings that change what is logged, evaluated or shown, or where the data is read from, never what is trained: a
# resume may change them (and the run's summary records that it did), and a run that ended is reused under them. Any
# other difference refuses to resume, and refuses to call an ended run this command's.
NOT_TRAINING = ("trainer.log_every", "trainer.eval_every", "trainer.eval_at_start", "trainer.checkpoint_every",
                "trainer.progress_bar", "trainer.num_workers", "trainer.eval_batch_size", "trainer.histogram_every",
                "trainer.objective", "trainer.resume", "trainer.ddp_timeout_s", "dataset.root", "dataset.download",
                "dataset.mnist_5k_path", "logger.", "label", "launch.")
ABSENT = "<absent>"


def _flat(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict) or not tree:
        return {prefix[:-1]: tree} if prefix else {}
    return {k: v for key, value in tree.items() for k, v in _flat(value, f"{prefix}{key}.").items()}


def differences(old: dict, new: dict) -> dict[str, tuple]:
    """{key: (old value, new value)} for every dotted key where two config trees (plain containers) differ."""
    old, new = _flat(old), _flat(new)
    same = lambda a, b: a == b or (a != a and b != b)  # NaN, as JSON gives it back, equals NaN
    return {k: (old.get(k, ABSENT), new.get(k, ABSENT)) for k in sorted(set(old) | set(new))
            if not same(old.get(k, ABSENT), new.get(k, ABSENT))}


def training_differences(old: dict, new: dict) -> dict[str, tuple]:
    """`differences` that change what is trained (all but NOT_TRAINING)."""
    return {k: v for k, v in differences(old, new).items() if not k.startswith(NOT_TRAINING)}


def listed(changes: dict[str, tuple], limit: int = 8) -> str:
    """`key: old -> new; ...` for a one-line message (the first `limit` keys, then how many more)."""
    shown = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in list(changes.items())[:limit])
    return shown + (f"; and {len(changes) - limit} more" if len(changes) > limit else "")


def check_resume_config(saved_yaml: str, cfg: DictConfig, ckpt_path: Path) -> dict[str, tuple]:
    """The differences a resume may carry (returned, to be recorded); a ValueError listing any other, which would
    silently train one run under two configs. Interpolations are compared as written."""
    changes = differences(OmegaConf.to_container(OmegaConf.create(saved_yaml), resolve=False),
                          OmegaConf.to_container(cfg, resolve=False))
    refused = {k: v for k, v in changes.items() if not k.startswith(NOT_TRAINING)}
    if refused:
        raise ValueError(f"{ckpt_path} was written under another config ({listed(refused)}). Resume with the command "
                         "that started the run, or start a new run: another run directory (hydra.run.dir=...) or "
                         "trainer.resume=false, which trains this one again from the start.")
    return changes
