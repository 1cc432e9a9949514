"""User-facing errors.

Every error a user can cause (bad model file, unsupported layer, wrong data shape, unwritable
folder, ...) is raised as :class:`LwcnnError` with one sentence that names the file, layer or
byte at fault and says what to do. The CLI prints it on stderr and exits with code 2.

| exception | exit code | meaning |
| --- | --- | --- |
| :class:`MismatchError` | 1 | a comparison or benchmark found a difference |
| :class:`LwcnnError` | 2 | bad input or usage |
| any other exception | 3 | an internal error (a bug) |
| :class:`ReferenceFailed` | 4 | a reference interpreter (TFLite Micro, LiteRT) could not run the model |
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


class ReferenceFailed(Exception):
    """A reference interpreter (TFLite Micro or LiteRT) could not run the model: it crashed (a signal,
    an abort), exited, hung past its time limit or raised. ``reference`` names it, ``reason`` says how it
    failed (the signal or exit code), ``stderr`` is what it printed before (TFLite Micro prints its error,
    e.g. an arena too small or an op it lacks, before it gives up; a failed ``TFLITE_CHECK`` prints nothing).
    The CLI exits with code 4."""

    exit_code = 4

    def __init__(self, reference: str, reason: str, stderr: str = "", hint: str = "") -> None:
        self.reference, self.reason, self.stderr, self.hint = reference, reason, stderr.strip(), hint
        msg = f"{reference} could not run the model: {reason}"
        if self.stderr:
            lines = list(dict.fromkeys(line.strip() for line in self.stderr.splitlines()))  # once each, in order
            msg += f"; it printed: {' | '.join(lines[-12:])}"
        elif reason.startswith("killed"):
            msg += " without printing a message"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)
        self.message = msg

    @classmethod
    def reported(cls, reference: str, message: str) -> ReferenceFailed:
        """The failure again from its message (a report's ``tflm_error``), to end the CLI with exit code 4."""
        exc = cls(reference, "")
        exc.args, exc.message = (message,), message
        return exc
