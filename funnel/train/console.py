"""What a run says. Each line goes to the console and, while rank 0 holds the run directory, to `<run dir>/run.log`
with a timestamp (appended: a resumed run continues the file), so a run's story survives a closed terminal."""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

_LOG = logging.getLogger("funnel.run")
_LOG.setLevel(logging.INFO)
_LOG.propagate = False  # the console line is printed below; Hydra's root handler would print it a second time


def say(text: str) -> None:
    print(text, flush=True)
    _LOG.info(text)


class _AppendHandler(logging.Handler):
    """Appends each line with its own open and write: no file stays open, and a full or read-only disk loses the
    line in run.log (the console has it) instead of ending the run or hiding the error that is ending it."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (self.format(record) + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            pass


@contextlib.contextmanager
def run_log(run_dir: Path):
    """Lines said inside also go to run_dir/run.log; an exception that ends the run is written there too."""
    handler = _AppendHandler(run_dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    _LOG.addHandler(handler)
    try:
        yield
    except BaseException as err:
        handler.emit(_LOG.makeRecord(_LOG.name, logging.ERROR, __file__, 0,
                                     f"stopped: {type(err).__name__}: {err}", None, None))
        raise
    finally:
        _LOG.removeHandler(handler)
