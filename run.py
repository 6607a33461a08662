"""The Hydra runner.

    python run.py experiment=<name> [key=value ...]          one run (resumes if its directory has a checkpoint)
    python run.py -m experiment=<name> optimizer.gamma_p=1e-5,1e-4,1e-3    a sweep, one run directory per point
    torchrun --nproc_per_node=8 run.py experiment=<name>     DDP on 8 GPUs (gloo on CPU)

See README.md for multi-node (torchrun rendezvous, SLURM).
"""
import os
import sys

if int(os.environ.get("RANK", "0")) > 0:
    # Every rank composes the same config and uses the same run directory; only rank 0 writes Hydra's files.
    sys.argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from funnel.train import resolvers  # noqa: E402

resolvers.register()


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    from hydra.core.hydra_config import HydraConfig

    from funnel.train.loop import train

    return train(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
    from funnel.train.distributed import exit_cleanly

    exit_cleanly()
