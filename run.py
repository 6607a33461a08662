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

    try:
        return train(cfg, HydraConfig.get().runtime.output_dir)
    except (ValueError, OSError, ImportError, RuntimeError) as err:
        # The runner's own errors say what is wrong and how to fix it: one line, no traceback (HYDRA_FULL_ERROR=1
        # shows it). Anything else keeps its traceback.
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not is_user_error(err):
            raise
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)


def is_user_error(err: BaseException) -> bool:
    """An error the user can act on from its message: bad settings, missing files or packages, a run directory in
    use, a full or read-only disk, DDP ranks that stopped answering."""
    from funnel.train.distributed import RanksTimedOut
    from funnel.train.lock import RunDirectoryInUse

    return isinstance(err, (ValueError, OSError, ImportError, RunDirectoryInUse, RanksTimedOut))


if __name__ == "__main__":
    main()
    from funnel.train.distributed import exit_cleanly

    exit_cleanly()
