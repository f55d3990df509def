"""The one exception family users see: bad input or an unavailable resource, said in a sentence.

The CLI prints such an error as one line and exits with status 1; any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations


class VideobgmError(Exception):
    """Base class: the message is one sentence naming the file or value and the problem."""


class InputError(VideobgmError, ValueError):
    """A parameter value or an input file's content is not acceptable."""
