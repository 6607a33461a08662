"""The runner's entry point (`funnel-run`; `python run.py` in a checkout). Its first act, before the seconds of
importing torch and Hydra, makes Ctrl-C and SIGTERM end the process in one line (funnel/train/signals.py)."""
from __future__ import annotations

import sys

from funnel.train import signals


def main() -> None:
    signals.install()
    try:
        from funnel.cli import run
    except KeyboardInterrupt as err:
        print(f"\n{signals.WHAT[signals.signal_name(err)]} while the runner was loading; nothing was started",
              file=sys.stderr)
        sys.exit(signals.exit_code(err))
    run()


if __name__ == "__main__":
    main()
