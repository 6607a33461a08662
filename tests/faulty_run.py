"""`python -m tests.faulty_run FAULT STEP ARGS...`: run.py with ARGS and a fault right after step STEP (and its
checkpoint, if one is due), injected through `train`'s `after_step`; nothing in funnel/ knows about it.

FAULT is `kill` (SIGKILL, as a crash), `interrupt` (SIGINT, as Ctrl-C in the terminal), `terminate` (SIGTERM, as
SLURM preempts a job), `interrupt-twice` (two SIGINTs, as an impatient Ctrl-C) or `stall` (DDP rank 1 stops answering
for two minutes, as a hung process would)."""
import functools
import os
import runpy
import signal
import sys
import time

from funnel.train import loop


def fault(kind: str, step: int, run) -> None:
    if run.step != step:
        return
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "interrupt":
        os.kill(os.getpid(), signal.SIGINT)
    elif kind == "terminate":
        os.kill(os.getpid(), signal.SIGTERM)
    elif kind == "interrupt-twice":
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
    elif kind == "stall" and run.ddp.rank == 1:
        time.sleep(120)


if __name__ == "__main__":
    kind, step = sys.argv[1], int(sys.argv[2])
    # Python's Ctrl-C handler, as in a terminal: a test run in the background (nohup, &) inherits SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = ["run.py", *sys.argv[3:]]
    loop.train = functools.partial(loop.train, after_step=functools.partial(fault, kind, step))
    runpy.run_path("run.py", run_name="__main__")
