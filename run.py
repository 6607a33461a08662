"""The Hydra runner in a checkout: `python run.py` takes the same arguments as the installed `funnel-run`.

    python run.py experiment=<name> [key=value ...]          one run (resumes if its directory has a checkpoint)
    python run.py -m experiment=<name> optimizer.gamma_p=1e-5,1e-4,1e-3    a sweep, one run directory per point
    torchrun --nproc_per_node=8 run.py experiment=<name>     DDP on 8 GPUs (gloo on CPU)

See README.md for multi-node (torchrun rendezvous, SLURM) and funnel/cli.py for the runner itself.
"""
from funnel.start import main

if __name__ == "__main__":
    main()
