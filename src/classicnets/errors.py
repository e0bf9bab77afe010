"""One exception type for every mistake a user can make.

The CLI catches :class:`UserError`, prints its message as one sentence and exits
with status 2; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: unknown names, bad numbers, missing files."""


class UnknownModelError(UserError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""
