"""User-facing errors.

Every error a user can cause (bad model file, unsupported layer, wrong data shape, unwritable
folder, ...) is raised as :class:`LwcnnError` with one sentence that names the file, layer or
byte at fault and says what to do. The CLI prints it on stderr and exits with code 2.
"""

from __future__ import annotations


class LwcnnError(Exception):
    """A problem with the user's input: printed as one message, exit code 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MismatchError(Exception):
    """A comparison found a difference (exit code 1). Carries the report that was produced."""

    exit_code = 1
