"""Writing output files so a crash never leaves a partial file under the final name, and taking
turns with the other processes of this machine at shared work."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile


def write_text_atomic(path: str, text: str) -> None:
  """Writes ``text`` to ``path + ".tmp"``, then renames it over ``path`` (atomic on POSIX)."""
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)


@contextlib.contextmanager
def machine_lock(path: str):
  """Waits for, then holds, an exclusive lock on ``path`` among this machine's processes.

  Runs started together (the ablation runner's ``--jobs``) then prepare a shared dataset one after
  the other, the later ones finding it done. The lock is a file in the temporary folder named by
  ``path``'s hash (nothing is written beside ``path``); the kernel drops it if its holder dies.
  """
  key = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:16]
  with open(os.path.join(tempfile.gettempdir(), f"sagan_jax-{key}.lock"), "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)
