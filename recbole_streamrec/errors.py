"""Errors in what the user gave (a config key, a dataset file, a checkpoint path), as opposed to bugs.

:class:`UserError` carries a one-line message that names the key, file or line at fault and what would be
valid; ``run_recbole_streamrec.py`` prints it without a traceback (``--debug`` keeps the traceback).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input: the message alone says what is wrong, where, and what would be valid."""


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """``" (did you mean TIGER?)"`` for the close matches of ``name`` (case-insensitive), else ``""``."""
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.6)
    return f" (did you mean {' or '.join(by_lower[c] for c in close)}?)" if close else ""


class MissingFileError(UserError, FileNotFoundError):
    """A file the user named (a checkpoint, a config file) does not exist; still a ``FileNotFoundError``."""
