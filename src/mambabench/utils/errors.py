"""Errors that name the problem and the fix, raised as early as the problem can be seen.

The command line (:mod:`mambabench.utils.cli`) prints a :class:`ConfigError` or an :class:`InputError`
(and their subclasses) as one line, ``error: <message>``, without a traceback; every other exception is
treated as a bug and keeps its traceback. Both are ``ValueError``; :class:`MissingFileError` is also a
``FileNotFoundError`` and :class:`MissingPackageError` an ``ImportError``, so callers that catch either
keep working.
"""


class ConfigError(ValueError):
    """A configuration that cannot work; the message says which keys and what to change."""


class InputError(ValueError):
    """A file or value from the user that cannot be used as it is (a damaged checkpoint, a directory
    where a file belongs, a corpus line without its text field, an unknown tokenizer name, ...); the
    message names it and the fix. The command line prints the message alone, without a traceback:
    subclass it for such errors."""


class MissingFileError(InputError, FileNotFoundError):
    """A file or folder the user named does not exist; the message names the path and how to make it."""


class DataNotFoundError(MissingFileError):
    """A dataset file is missing; the message names the path and the command that prepares it."""

    def __init__(self, path: str, prepare_command: str) -> None:
        super().__init__(f"data file '{path}' does not exist; prepare it with: {prepare_command}")
        self.path = path
        self.prepare_command = prepare_command

    def __reduce__(self) -> tuple:
        # rebuilt from its two arguments, so that it survives the trip from a DataLoader worker
        return type(self), (self.path, self.prepare_command)


class MissingPackageError(InputError, ImportError):
    """An optional package that a feature needs is not installed; the message names the install command."""
