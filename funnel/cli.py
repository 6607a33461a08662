"""The Hydra runner: `funnel-run` (installed) or `python run.py` (in a checkout), with the same arguments.

    funnel-run experiment=<name> [key=value ...]          one run (resumes if its directory has a checkpoint)
    funnel-run -m experiment=<name> optimizer.gamma_p=1e-5,1e-4,1e-3    a sweep, one run directory per point
    torchrun --nproc_per_node=8 -m funnel.cli experiment=<name>          DDP on 8 GPUs (gloo on CPU)

The configs ship inside the package (funnel/configs), so the runner works outside a checkout; run directories go
under the current directory. Imports Hydra: the optimizers (funnel.optim) never need this module.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from funnel.train import resolvers, signals

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SWEEP_ENV = "FUNNEL_SWEEP"  # the sweep id, set by SweepRecord for the runs of the sweep (also under SLURM)

resolvers.register()
_trained = False  # whether this process's run (or the last of its sweep) got through `train`


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    from funnel.train.loop import train

    hc = HydraConfig.get()
    with open_dict(cfg):  # where the run came from: in summary.json and W&B, and read by experiments.select
        cfg.launch = {"overrides": list(hc.overrides.task), "arm": hc.runtime.choices.get("arm"),
                      "sweep": os.environ.get(SWEEP_ENV) if hc.mode == RunMode.MULTIRUN else None}
    note_moved_run(Path(hc.runtime.output_dir), hc.job.override_dirname)
    global _trained
    try:
        objective = train(cfg, hc.runtime.output_dir)
        _trained = True
        return objective
    except KeyboardInterrupt as err:
        if int(os.environ.get("RANK", "0")) == 0:  # every DDP rank gets the signal; one line is enough
            print(f"\n{interrupted_line(err, cfg.trainer.resume)}", file=sys.stderr)
        sys.exit(signals.exit_code(err))
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


def resume_command() -> str:
    """The command this process was started with, as the user would type it again (under torchrun, the script's
    part: the torchrun options are the user's own)."""
    program = Path(sys.argv[0])
    head = ["python", sys.argv[0]] if program.suffix == ".py" else [program.name]
    command = shlex.join([*head, *sys.argv[1:]])
    return f"torchrun <the same options> {command}" if "TORCHELASTIC_RUN_ID" in os.environ else command


def interrupted_line(err: KeyboardInterrupt, resume: bool) -> str:
    """What a Ctrl-C or SIGTERM stopped, and where the next start of the same command begins."""
    from funnel.train.loop import Interrupted

    what = signals.WHAT[signals.signal_name(err)]
    if not isinstance(err, Interrupted):
        return f"{what} before training started. To start again: {resume_command()}"
    if err.ended:
        return f"{what} after the run ended ({err.ended}): its summary.json is written, nothing is lost."
    if not resume:
        return f"{what} at step {err.step}; trainer.resume=false, so the next start begins at step 0."
    if err.checkpoint_step == 0:
        return (f"{what} at step {err.step}, before its first checkpoint (trainer.checkpoint_every): the next "
                f"start begins at step 0. To start it: {resume_command()}")
    where = "a checkpoint written on stopping" if err.checkpoint_step == err.step else "its last checkpoint"
    return (f"{what} at step {err.step}; it resumes from step {err.checkpoint_step} ({where}). Run the same "
            f"command to resume: {resume_command()}")


def note_moved_run(run_dir: Path, override_dirname: str) -> None:
    """Before run folders got their own names, a run without overrides lived in the experiment's folder and a '/'
    in a value made nested folders. Such a run is not resumed from there: say where it is and how to move it."""
    renamed = not override_dirname or (len(override_dirname) <= resolvers.MAX_DIRNAME
                                       and ("/" in override_dirname or "%" in override_dirname))
    if not renamed or run_dir.name != resolvers.short_dirname(override_dirname):  # a hydra.run.dir of the user's
        return
    old = run_dir.parent / override_dirname if override_dirname else run_dir.parent
    started = lambda d: (d / "summary.json").exists() or (d / "checkpoints").exists()
    if not started(run_dir) and started(old):
        print(f"note: {old} holds this command's run as an earlier version named it; this run starts afresh in "
              f"{run_dir}. To continue the old one instead, move its files there and run the command again.")


class RunFolder(Callback):
    """Hydra makes the run's folder before the runner starts; a folder it cannot make (a file in its place, a
    read-only disk, no permission) ends in one line here instead of in Hydra's traceback."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        make_folder(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        make_folder(config.hydra.sweep.dir, "hydra.sweep.dir")


def make_folder(path: str, setting: str) -> None:
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        fix = (f"{path} is a file: move it, or set {setting}=<a folder>" if Path(path).is_file()
               else f"set {setting}=<a folder you can write> (or run_root=...)")
        print(f"error: {type(err).__name__}: cannot make the run folder {path} ({err.strerror}): {fix}",
              file=sys.stderr)
        sys.exit(1)


class SweepRecord(Callback):
    """One record per sweep, `<sweep dir>/sweeps/<id>.yaml`: the sweep's command-line overrides and the keys it
    sweeps. The id is a hash of the overrides, so the same command keeps one record and two sweeps of an experiment
    never overwrite each other's (Hydra's own multirun.yaml holds only the last sweep). Its runs get the id in
    `launch.sweep` through the environment, which SLURM jobs inherit."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        overrides = list(config.hydra.overrides.task)
        excluded = set(config.hydra.job.config.override_dirname.exclude_keys)  # where a run runs, not what it trains
        params = {str(k): str(v) for k, v in (config.hydra.sweeper.get("params") or {}).items()}
        parser = OverridesParser.create()
        given = parser.parse_overrides(overrides)
        # the experiment's sweeper params sweep a key unless the command line sets it
        from_config = [o for o in parser.parse_overrides([f"{k}={v}" for k, v in params.items()])
                       if o.get_key_element() not in {g.get_key_element() for g in given}]
        swept = sorted({o.get_key_element() for o in [*given, *from_config] if o.is_sweep_override()})
        trained = sorted(o.input_line for o in given if o.get_key_element().lstrip("+~") not in excluded)
        digest = hashlib.sha1(json.dumps([trained, sorted(params.items())]).encode()).hexdigest()[:8]
        sweep = f"{config.name}-{digest}"
        os.environ[SWEEP_ENV] = sweep
        path = Path(config.hydra.sweep.dir) / "sweeps" / f"{sweep}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save({"sweep": sweep, "command": resume_command(), "overrides": overrides,
                        "sweeper_params": params, "swept": swept,
                        "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}, path)

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        """Each run the sweep launches, trained now or already ended, into `<id>.runs`: a run an earlier sweep
        trained keeps that sweep's id in its summary, yet belongs to this one too."""
        sweep = os.environ.get(SWEEP_ENV)
        if sweep is None or config.hydra.mode != RunMode.MULTIRUN:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        run_dir = os.path.relpath(config.hydra.runtime.output_dir, sweep_dir)
        with open(sweep_dir / "sweeps" / f"{sweep}.runs", "a") as f:  # one short line: one write, also for SLURM jobs
            f.write(run_dir + "\n")


def run() -> None:
    """The runner (`funnel-run` and `python run.py` come here through funnel.start; torchrun starts it as
    `-m funnel.cli`)."""
    signals.install()
    if int(os.environ.get("RANK", "0")) > 0:
        # Every rank composes the same config and uses the same run directory; only rank 0 writes Hydra's files.
        sys.argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    try:
        main()
        from funnel.train.distributed import exit_cleanly

        exit_cleanly()
    except KeyboardInterrupt as err:  # while Hydra composes, or once the run has ended
        if int(os.environ.get("RANK", "0")) == 0:
            line = f"{signals.WHAT[signals.signal_name(err)]} after the run ended: nothing is lost" if _trained \
                else interrupted_line(err, resume=True)
            print(f"\n{line}", file=sys.stderr)
        sys.exit(signals.exit_code(err))


if __name__ == "__main__":
    run()
