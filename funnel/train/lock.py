"""One process at a time in a run directory: an advisory lock (flock) on <run_dir>/.lock, held for the run's life.

Two identical commands started together used to both train and write every metrics line twice. The second now
stops at once, naming the first one's PID. The operating system releases the lock when its process ends, however
it ends, so a lock left by a killed run is simply taken over.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path


class RunDirectoryInUse(RuntimeError):
    def __init__(self, message: str, holder: str):
        super().__init__(message)
        self.holder = holder  # the PID the lock file names


class RunLock:
    def __init__(self, run_dir: str | Path, name: str = ".lock"):
        self.path = Path(run_dir) / name
        self.file = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            file.close()
            raise RunDirectoryInUse(f"{self.path.parent} is in use by process {holder}, which is training this run; "
                                    "wait for it to end, or stop it, or give this run another directory",
                                    holder) from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self.file = file
        return self

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None
