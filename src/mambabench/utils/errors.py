"""Errors that name the problem and the fix, raised before any expensive work starts."""


class ConfigError(ValueError):
    """A configuration that cannot work; the message says which keys and what to change."""


class InputError(ValueError):
    """A file or value from the user that cannot be used as it is (a damaged checkpoint, a directory
    where a file belongs, ...); the message names it and the fix. The command line prints the message
    alone, without a traceback: subclass it for such errors."""


class DataNotFoundError(FileNotFoundError):
    """A dataset file is missing; the message names the path and the command that prepares it."""

    def __init__(self, path: str, prepare_command: str) -> None:
        super().__init__(f"data file '{path}' does not exist; prepare it with: {prepare_command}")
        self.path = path
        self.prepare_command = prepare_command
