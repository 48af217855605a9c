"""Errors a user can fix: the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class MvreconError(Exception):
    """A problem with the user's input or environment, stated in one line.

    The message names the file (when there is one) and the problem, e.g.
    ``rigs/a/rig.json: camera 'cam3' has a 4x3 K, expected 3x3``.
    """

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        text = message if self.path is None else f"{self.path}: {message}"
        super().__init__(" ".join(text.split("\n")))


class InputError(MvreconError):
    """A malformed, missing or inconsistent input file."""


class SessionBusy(MvreconError):
    """Another process holds the session lock."""

    exit_code = 3


class StageMissing(MvreconError):
    """A stage's required inputs (the outputs of an earlier stage) do not exist yet."""


class FitDiverged(MvreconError):
    """An optimisation produced NaN or diverging losses."""

    exit_code = 4
