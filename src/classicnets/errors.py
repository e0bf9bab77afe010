"""One exception type for every mistake a user can make.

The CLI catches :class:`UserError`, prints its message as one sentence and exits
with status 2; so does a full disk (:func:`disk_full_cause`), which the user must make room on.
Anything else is a bug and keeps its traceback.
"""

import errno
import pickle
import re
import zipfile

# No space, or no quota, left: nothing can be written until the user frees some.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class UserError(Exception):
    """Bad input from the user: unknown names, bad numbers, missing files."""


class UnknownModelError(UserError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


def disk_full_cause(error: BaseException) -> OSError | None:
    """The no-space OSError behind ``error``, if that is what went wrong. The chain is walked
    because libraries wrap it: torch.save's zip writer, failing to close the half-written
    file, raises a RuntimeError ("unexpected pos") on top of the ENOSPC."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def load_failure_reason(error: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, in words a user can act on.

    torch's own text for a file holding Python objects goes on to suggest
    ``weights_only=False``, which would run code from the file: it is never passed on. The
    unpickler's KeyError or IndexError on random bytes says nothing, so those become words too.
    """
    if isinstance(error, pickle.UnpicklingError) or "weights_only" in str(error):
        return "it holds Python objects besides tensors and plain values, which no file of ours does"
    if isinstance(error, zipfile.BadZipFile) or "zip archive" in str(error) or "central directory" in str(error):
        return "not a PyTorch file, or cut short"
    if isinstance(error, (OSError, RuntimeError, EOFError)):
        return one_line(error)
    return "not a file written by torch.save"


def one_line(error: BaseException) -> str:
    """An exception's text on one line, without a final full stop (URLError keeps it in .reason)."""
    reason = getattr(error, "reason", None) or error
    text = re.sub(r"\s+", " ", str(reason)).strip().rstrip(".")
    return text or type(error).__name__
