"""The one exception type that reaches a user as a single line.

Anything a user can get wrong (a recipe key, a file, a column, a field) raises
`UserError` with a message that names the problem; the CLI prints it as one
line and exits 2. Every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from a user: printed as one line, exit status 2."""


def error_line(err: BaseException) -> str:
    """An exception as one line for a warning: its message's last line (where
    Ray and DCP put the cause), at most 200 characters, or its type's name."""
    text = str(err).strip().splitlines()
    return (text[-1] if text else type(err).__name__)[:200]


class RunStopped(Exception):
    """A run stopped on purpose or by a fault it cannot recover from (a signal,
    a dead learner rank): printed as one line saying how to resume, exit 1."""
