"""Flag parsing shared by the command-line entry points (train.py, evaluate.py, ``-m`` modules)."""

from __future__ import annotations

import errno
import logging as std_logging
import re
import sys

from absl import flags, logging
from ml_collections import config_flags

from sagan_jax.errors import UserError

USER_ERROR_EXIT = 2  # as argparse and absl report a usage error
_DEBUG = flags.DEFINE_bool("debug", False, "show the traceback of a user error (a wrong path, field or dataset)")
_CPU_FAST_PATH = flags.DEFINE_bool(
  "cpu_fast_path",
  True,
  "on a CPU host: networks built from sagan_jax.cpu's layers (matrix-product gradients) and "
  "XLA's step memory kept mapped (glibc); --nocpu_fast_path: flax's layers and the allocator's defaults",
)


def cpu_setup():
  """The CPU fast path as ``--cpu_fast_path`` asks (`sagan_jax.cpu.setup`); call before any computation."""
  from sagan_jax import cpu  # noqa: PLC0415  (flax and jax load only for the commands that compute)

  return cpu.setup(_CPU_FAST_PATH.value)


def _unknown_key(error: Exception, argv: list[str]):
  overrides = [a.split("=", 1)[0][2:] for a in argv if re.match(r"^--config\.", a)]
  text = str(error)
  key = re.search(r"[A-Za-z_]\w*", text)
  key = key.group(0) if key else text
  hint = re.search(r'Did you mean "(\w+)"', text)
  named = [o for o in overrides if o.split(".")[-1] == key] or overrides
  print(
    f"error: unknown config key {key!r} (from {', '.join('--' + n for n in named)}): the config has no such "
    f"field{f'; did you mean {hint.group(1)!r}?' if hint else ''} (the fields are in the config file; "
    "`--helpfull` lists the flags)",
    file=sys.stderr,
  )
  sys.exit(USER_ERROR_EXIT)


def define_config_file(name: str, default: str | None, help_string: str):
  """`config_flags.DEFINE_config_file` with ``lock_config=True``, reporting an unknown override key clearly.

  ml_collections applies ``--config.<key>=...`` overrides as soon as the flag is defined when it
  has a default, and reports a key the config lacks as a bare ``KeyError``/``AttributeError``.
  """
  try:
    return config_flags.DEFINE_config_file(name, default, help_string, lock_config=True)
  except (KeyError, AttributeError) as e:
    _unknown_key(e, sys.argv)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing (pass as ``app.run(main, flags_parser=parse_flags)``), with one-line errors."""
  try:
    parsed = flags.FLAGS(argv)
  except (KeyError, AttributeError) as e:
    _unknown_key(e, argv)
  except flags.Error as e:
    text = str(e)
    if "Error whilst parsing config file" in text:  # the config module raised: its last line says what
      last = [line for line in text.strip().splitlines() if line.strip()][-1]
      _fail(last.split(": ", 1)[1] if ": " in last else last)
    _fail(f"{text.splitlines()[0]} (pass --helpfull to see the flags)")
  _check_config_files()
  return parsed


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(USER_ERROR_EXIT)


def _check_config_files() -> None:
  """ml_collections defers a config file that cannot be loaded to its first use: report it now, in one line."""
  for name in flags.FLAGS:
    flag = flags.FLAGS[name]
    if type(flag).__module__.startswith("ml_collections") and flag.present:
      try:
        getattr(flag.value, "lock", None)  # a file that failed to load raises on first attribute access
      except OSError as e:
        reason = re.search(r"\[Errno \d+\] ([^\n]*)", str(e))
        _fail(f"--{name}: cannot load the config file ({reason.group(1) if reason else str(e).splitlines()[0]})")


class _DropAdvice:
  """Drops library advice that is no warning about the run (TFDS's "OpenCV is not installed")."""

  def filter(self, record) -> bool:
    return "OpenCV is not installed" not in record.getMessage()


def quiet_logging() -> None:
  """absl INFO lines (Orbax, TFDS, ours) off unless ``--verbosity`` asks for them: a run shows its
  progress bars, stage lines, warnings and results. Warnings read ``warning: ...`` as errors read
  ``error: ...``; ``--verbosity`` keeps absl's header (time, thread, file:line) on every line."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
    logging.get_absl_logger().addFilter(_DropAdvice())
    logging.get_absl_handler().setFormatter(_ConsoleFormatter())


class _ConsoleFormatter(std_logging.Formatter):
  """``<level>: <message>``, then the traceback of ``logging.exception`` if there is one."""

  def format(self, record: std_logging.LogRecord) -> str:
    text = f"{record.levelname.lower()}: {record.getMessage()}"
    if record.exc_info:
      text += "\n" + self.formatException(record.exc_info)
    return text


# Operating-system errors a user fixes (a full disk, a read-only or forbidden folder), named by path.
_USER_ERRNOS = {
  errno.ENOSPC: "no space left on the device",
  errno.EROFS: "read-only file system",
  errno.EACCES: "permission denied",
  errno.EPERM: "operation not permitted",
  errno.EDQUOT: "disk quota exceeded",
}


def _debug() -> bool:
  return flags.FLAGS.is_parsed() and _DEBUG.value


def exit_on_user_error(fn, *args, **kwargs):
  """Calls ``fn``; a user error becomes one line ``error: <message>`` on stderr and exit status 2.

  Bugs keep their traceback; so do user errors with ``--debug``.
  """
  try:
    return fn(*args, **kwargs)
  except (UserError, FileNotFoundError) as e:
    if _debug():
      raise
    print(f"error: {e}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT)
  except OSError as e:
    if e.errno not in _USER_ERRNOS or _debug():
      raise
    print(f"error: {_USER_ERRNOS[e.errno]}: {e.filename or e}; free space or choose another folder", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT)
