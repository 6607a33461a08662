"""Ctrl-C (SIGINT) and SIGTERM, which is how SLURM preempts a job and how torchrun stops its workers.

Once `install()` ran (the runner's first act, before its imports), either signal raises `Stop` where the process
stands, and the runner ends in one line with the shell's exit code for that signal (128 + its number: 130, 143).
While the training loop runs `deferred()`, the first signal is only noted: the loop finishes the step it is in, writes
a checkpoint there and stops, so a preempted run loses nothing; a second signal stops at once. Standard library only:
this module is imported before torch and Hydra.
"""
from __future__ import annotations

import contextlib
import signal
import threading

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}
WHAT = {"SIGINT": "interrupted (Ctrl-C, SIGINT)", "SIGTERM": "stopped by SIGTERM (a preemption or a kill)"}

_deferring = False
_pending: str | None = None


class Stop(KeyboardInterrupt):
    """A signal that stops the process where it stands."""

    def __init__(self, name: str = "SIGINT"):
        super().__init__(name)
        self.signal = name


def signal_name(err: BaseException) -> str:
    """The signal behind a KeyboardInterrupt (a plain one is Ctrl-C)."""
    return getattr(err, "signal", "SIGINT")


def exit_code(err: BaseException) -> int:
    return EXIT_CODES[signal_name(err)]


def _handle(signum, frame) -> None:
    global _pending
    name = signal.Signals(signum).name
    if _deferring and _pending is None:
        _pending = name
        return
    raise Stop(name)


def install() -> None:
    """Handle SIGTERM, and SIGINT where Python's own Ctrl-C handler is in place (a job started in the background
    inherits SIGINT ignored, and keeps it so). Only the main thread can set handlers."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _handle)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _handle)


@contextlib.contextmanager
def deferred(enabled: bool = True):
    """Inside, with `install()`ed handlers, the first signal is noted for `pending()` instead of raised (when
    `enabled`: the caller can stop cleanly at its next safe point); a second one raises at once."""
    global _deferring, _pending
    _deferring, _pending = enabled, None
    try:
        yield
    finally:
        _deferring, _pending = False, None


def pending() -> str | None:
    """The signal noted inside `deferred()`, if one came."""
    return _pending
