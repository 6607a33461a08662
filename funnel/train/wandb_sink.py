"""Weights & Biases mirror of metrics.jsonl. Offline unless the user asks for online; an online run that cannot
start (no key, no network, the server down) falls back to offline within seconds, with a warning. Offline runs
upload later with `wandb sync <run dir>/wandb/offline-run-*`. Imported only when logger=wandb."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

MODES = ("offline", "online", "disabled")
ONLINE_TIMEOUT_S = 10  # an online run that cannot reach its server falls back to offline after this, not ~100 s


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
        init = dict(project=project, group=group, name=name or run_dir.name, dir=str(run_dir), config=config,
                    id=run_id, resume="allow", tags=list(tags))
        try:
            self.run = wandb.init(mode=mode, settings=wandb.Settings(silent=True, init_timeout=ONLINE_TIMEOUT_S),
                                  **init)
        except Exception as err:  # wandb raises several kinds for no key, no network, a server that is down
            if mode != "online":
                raise
            wandb.teardown()
            reason = (str(err).splitlines() or [""])[0][:200]
            print(f"W&B online failed ({type(err).__name__}: {reason}); logging offline instead. Upload later with: "
                  f"wandb sync {run_dir}/wandb/offline-run-*")
            self.run = wandb.init(mode="offline", settings=wandb.Settings(silent=True), **init)

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
