"""Errors that mean "change the input": every one subclasses `UserError`, which the entry points
report as one line ``error: <message>`` with exit status 2 (`sagan_jax.cli.exit_on_user_error`).

Each message names the file, field or flag at fault and how to fix it. The built-in base of each
(``ValueError``, ``FileNotFoundError``, ...) is kept, so library callers may catch either.
"""


class UserError(Exception):
  """A mistake in the input (a path, a config field, a dataset, the disk): fixed by the user, not the code."""


class ConfigError(UserError, ValueError):
  """A config field or command-line flag holds a value the run cannot use."""


class MissingInputError(UserError, FileNotFoundError):
  """A file or folder the run needs is not there (a dataset, an earlier stage's output)."""


class WorkdirMismatchError(UserError, ValueError):
  """The workdir was made by another config."""


class WorkdirLockedError(UserError, RuntimeError):
  """Another process is running in the workdir."""


class CheckpointError(UserError, RuntimeError):
  """A checkpoint cannot be written or read back; the message says which folder to remove or free."""


class NonFiniteLossError(UserError, FloatingPointError):
  """A loss became NaN or infinite; the stage stops before keeping the state that produced it."""
