"""`python -m tests.killed_run STEP ARGS...`: run.py with ARGS, SIGKILLed right after step STEP (and its checkpoint,
if one is due), as a crash or a pre-empted job would be. The fault comes from here, through `train`'s
`after_step`: nothing in funnel/ knows about it."""
import functools
import os
import runpy
import signal
import sys

from funnel.train import loop


def kill_after(step: int, run) -> None:
    if run.step == step:
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    step = int(sys.argv[1])
    sys.argv = ["run.py", *sys.argv[2:]]
    loop.train = functools.partial(loop.train, after_step=functools.partial(kill_after, step))
    runpy.run_path("run.py", run_name="__main__")
