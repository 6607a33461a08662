"""What a run says. Each line goes to the console and, while rank 0 holds the run directory, to `<run dir>/run.log`
with a timestamp (appended: a resumed run continues the file), so a run's story survives a closed terminal."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

_LOG = logging.getLogger("funnel.run")
_LOG.setLevel(logging.INFO)
_LOG.propagate = False  # the console line is printed below; Hydra's root handler would print it a second time


def say(text: str) -> None:
    print(text, flush=True)
    _LOG.info(text)


@contextlib.contextmanager
def run_log(run_dir: Path):
    """Lines said inside also go to run_dir/run.log; an exception that ends the run is written there too."""
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
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
        handler.close()
