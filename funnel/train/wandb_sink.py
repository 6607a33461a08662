"""Weights & Biases mirror of metrics.jsonl. Offline unless the user asks for online: an online run with no
reachable server hangs for minutes, and offline runs upload later with `wandb sync <run dir>/wandb/offline-run-*`.
Imported only when logger=wandb."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

MODES = ("offline", "online", "disabled")


class WandbSink:
    def __init__(self, run_dir: str | Path, config: dict, project: str = "funnel", group: str | None = None,
                 name: str | None = None, mode: str = "offline", tags=()):
        mode = os.environ.get("WANDB_MODE", mode)  # the environment wins, as in wandb itself
        if mode not in MODES:
            raise ValueError(f"Unknown logger.mode {mode!r}; valid: {', '.join(MODES)}")
        import wandb

        self._wandb = wandb
        run_dir = Path(run_dir).resolve()
        # A stable id per run directory: a resumed run continues the same W&B run.
        run_id = hashlib.sha1(str(run_dir).encode()).hexdigest()[:16]
        self.run = wandb.init(project=project, group=group, name=name or run_dir.name, dir=str(run_dir),
                              mode=mode, config=config, id=run_id, resume="allow", tags=list(tags),
                              settings=wandb.Settings(silent=True))

    def log(self, record: dict, step: int) -> None:
        self.run.log({k: v for k, v in record.items() if k != "step"}, step=step)

    def log_histograms(self, tensors: dict[str, torch.Tensor], step: int, max_values: int = 10_000) -> None:
        hists = {}
        for key, t in tensors.items():
            flat = t.detach().reshape(-1).float()
            if flat.numel() > max_values:
                flat = flat[:: flat.numel() // max_values]
            hists[key] = self._wandb.Histogram(flat.cpu().numpy())
        self.run.log(hists, step=step)

    def finish(self) -> None:
        self.run.finish()
