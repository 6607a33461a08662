"""OmegaConf resolvers that the configs use; `register()` must run before Hydra composes (run.py calls it)."""
from __future__ import annotations

import hashlib

from omegaconf import OmegaConf

MAX_DIRNAME = 200  # file names are limited to 255 bytes; leave room for suffixes


NO_OVERRIDES = "defaults"  # cannot be an override string (those hold "="): never another run's name


def short_dirname(overrides: str) -> str:
    """A run directory name from Hydra's override_dirname: one file name whatever the values ('%' and '/' are
    percent-encoded, as in URLs), as is when short enough, else its start plus a hash of the whole, so that the same
    command always gets the same directory and different ones never share it."""
    overrides = overrides.replace("%", "%25").replace("/", "%2F") or NO_OVERRIDES
    if len(overrides) <= MAX_DIRNAME:
        return overrides
    digest = hashlib.sha1(overrides.encode()).hexdigest()[:12]
    return f"{overrides[:MAX_DIRNAME - 14]}~{digest}"


def register() -> None:
    OmegaConf.register_new_resolver("short_dirname", short_dirname, replace=True)
