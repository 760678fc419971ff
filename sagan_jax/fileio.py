"""Writing output files so a crash never leaves a partial file under the final name."""

from __future__ import annotations

import os


def write_text_atomic(path: str, text: str) -> None:
  """Writes ``text`` to ``path + ".tmp"``, then renames it over ``path`` (atomic on POSIX)."""
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)
