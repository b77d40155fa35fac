"""The library's one exception type for errors a user can cause.

Anything a user can get wrong (a bad file, an empty prompt, a preset with a
value out of range, an unknown prior name, missing weights) raises
:class:`SDSAudioError` with a message that says what is wrong and what to do.
The CLI catches exactly this type, prints the message on one line and exits
with a non-zero status; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class SDSAudioError(Exception):
    """A user error: the message says what went wrong and how to fix it.

    Args:
        message: one line, written for the user.
        field: optional dotted name of the offending field (for preset and
            config validation), e.g. ``"params.ratio[2]"``.
        exit_code: status the CLI exits with (2 for invalid input, 1 otherwise).
    """

    def __init__(self, message: str, *, field: str | None = None, exit_code: int = 2):
        if field is not None and not message.startswith(field):
            message = f"{field}: {message}"
        super().__init__(message)
        self.field = field
        self.exit_code = exit_code
