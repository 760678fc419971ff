"""A run's workdir: one run at a time (a lock), owned by one config (a record and a guard).

`owned` is how `train.py` and `evaluate.py` enter a workdir: it checks the path, takes the lock,
records the config in a new workdir or refuses one made by a config that computes otherwise, and,
when the run fails before writing anything but that bookkeeping, leaves no claimed workdir behind
(so the corrected command is not refused).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
from typing import Any

import jax
import ml_collections
from absl import logging

from sagan_jax import fileio
from sagan_jax.errors import ConfigError, MissingInputError, WorkdirLockedError, WorkdirMismatchError

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"
PLAN_FILE = "plan.json"
# Fields that change how a run is driven or reported, not what it computes: a workdir may be
# resumed with other values. A trailing dot covers a whole section.
FREE_FIELDS = (
  "stages",
  "distributed.",
  "data.num_threads",
  "data.data_dir",
  "sagan_train.log_every",
  "sagan_train.sample_every",
  "sagan_train.checkpoint_every",
  "sagan_train.fidelity_every",
  "ide.log_every",
  "ide.checkpoint_every",
  "masks.log_every",
  "masks.checkpoint_every",
  "eval.",
  "translate.batch_size",
)
# Fields added since workdirs were first recorded, with the value that computes what a workdir
# recorded without them computed: an older workdir stays usable with the new defaults.
ADDED_FIELDS = {
  "ide.augment": "none",
  "sagan.critic_region": "frame",
  "sagan.generator_ema": 0.0,
  "sagan.critic_augment": "none",
  "sagan.lambda_reid": 0.0,
  "sagan.generator_person_path": "full",
  "sagan.generator_background_path": "full",
  "sagan.lambda_background_idt": 0.0,
  "sagan.code_distribution": "normal",
  "sagan.cycle_code": "shared",
  "sagan.scl_cycles": "both",
  "sagan.stm_head_s2": "same",
  "sagan.spatial_critics": "both",
  "sagan.camera_critics": False,
  "translate.region": "frame",
  "translate.strength": 1.0,
  "ide.view_range": 0.02,
}
# Sections that compute nothing while a switch is off: compared only when either config turns it on.
SWITCHED_SECTIONS = {"reid_teacher.": ("sagan.lambda_reid", 0.0)}
# Fields read only at one value of another: compared only when either config sets that value.
READ_WHEN = {"ide.view_range": ("ide.augment", "view")}
# Characters a checkpoint path cannot hold: Orbax writes it, then tensorstore cannot open it again.
UNSAFE_PATH_CHARACTERS = "[]"


def check_path(workdir: str, flag: str = "--workdir") -> None:
  """Refuses a workdir that is a file, or whose path a checkpoint could not be read back from."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"{flag}={workdir!r} is a file, not a folder: choose a folder (new or a run's)")
  bad = sorted({c for c in os.path.abspath(workdir) if c in UNSAFE_PATH_CHARACTERS})
  if bad:
    raise ConfigError(
      f"{flag}={workdir!r}: its path holds {' '.join(bad)}, which checkpoints cannot be read back from "
      "(tensorstore cannot open such a path); choose a path without them"
    )


class WorkdirLock:
  """An exclusive ``fcntl`` lock on ``WORKDIR/.lock``, naming its holder.

  The kernel drops the lock when its process dies, so a lock file left by a dead run is taken
  over (with a warning naming it). Only process 0 of a multi-host run holds it. With ``wait``, a
  held lock is waited for (with a warning naming its holder) instead of refused: for a folder that
  runs share, such as the reference IDE that the first of several runs started together trains.
  """

  def __init__(self, workdir: str, wait: bool = False):
    self.path = os.path.join(workdir, LOCK_FILE)
    self.wait = wait
    self._file = None

  def __enter__(self):
    if jax.process_index() != 0:
      return self
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    self._file = open(self.path, "a+")
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._file.seek(0)
      holder = self._file.read().strip() or "another process"
      if not self.wait:
        self._file.close()
        raise WorkdirLockedError(
          f"workdir {os.path.dirname(self.path)!r} is in use by {holder}: wait for it to end, or use another --workdir"
        ) from None
      logging.warning("waiting for %s, which holds %s", holder, os.path.dirname(self.path))
      fcntl.flock(self._file, fcntl.LOCK_EX)
    self._file.seek(0)
    previous = self._file.read().strip()
    if previous:
      logging.warning("taking over the lock of %s in %s (that run is no longer alive)", previous, self.path)
    self._file.seek(0)
    self._file.truncate()
    self._file.write(f"PID {os.getpid()} on host {socket.gethostname()}")
    self._file.flush()
    return self

  def __exit__(self, *exc):
    if self._file is not None:
      self._file.seek(0)
      self._file.truncate()  # a clean exit leaves nothing to take over
      self._file.close()
      self._file = None


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(d, dict):
    out = {}
    for k, v in d.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: list(d) if isinstance(d, tuple) else d}


def _comparable(config_dict: dict) -> dict[str, Any]:
  flat = _flatten(json.loads(json.dumps(config_dict)))
  free = lambda k: any(k == f or (f.endswith(".") and k.startswith(f)) for f in FREE_FIELDS)
  return {k: v for k, v in flat.items() if not free(k)}


def claim(config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool = False, create: bool = True):
  """Records the config in a new workdir; refuses a workdir made by a config that computes otherwise.

  With ``create=False`` (evaluation) a workdir without a recorded config is an error, not a new run.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not create and not os.path.isfile(path):
    raise MissingInputError(
      f"{workdir!r} holds no run ({CONFIG_FILE} missing): train one with "
      f"python train.py --config=... --workdir={workdir}"
    )
  current = json.loads(config.to_json_best_effort())
  if os.path.isfile(path):
    with open(path) as f:
      old, new = {**ADDED_FIELDS, **_comparable(json.load(f))}, _comparable(current)
    for section, (switch, off) in SWITCHED_SECTIONS.items():
      if old.get(switch, off) == off and new.get(switch, off) == off:
        old, new = ({k: v for k, v in d.items() if not k.startswith(section)} for d in (old, new))
    for field, (switch, value) in READ_WHEN.items():
      if old.get(switch) != value and new.get(switch) != value:
        old, new = ({k: v for k, v in d.items() if k != field} for d in (old, new))
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed and not allow_config_change:
      shown = "; ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in changed[:6])
      fix = (
        "use a new --workdir, or pass --allow_config_change to continue this one with the new config"
        if create
        else "evaluate it with the config that trained it (the same --config and --config.<field> values)"
      )
      raise WorkdirMismatchError(
        f"workdir {workdir!r} was made by another config ({len(changed)} fields differ: {shown}"
        f"{'; ...' if len(changed) > 6 else ''}): {fix}"
      )
    if not changed:
      return
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    fileio.write_text_atomic(path, json.dumps(current, indent=1, sort_keys=True))


_BOOKKEEPING = (CONFIG_FILE, PLAN_FILE, LOCK_FILE)


def _unclaim(workdir: str, remove_dir: bool) -> None:
  """Removes a new workdir's bookkeeping when nothing else was written in it."""
  written = [os.path.join(d, f) for d, _, fs in os.walk(workdir) for f in fs]
  if any(os.path.relpath(p, workdir) not in _BOOKKEEPING for p in written):
    return
  for name in _BOOKKEEPING:
    if name != LOCK_FILE and os.path.isfile(os.path.join(workdir, name)):
      os.remove(os.path.join(workdir, name))
  if remove_dir:
    try:  # the lock file goes last, once the lock is released; an empty tree is removed
      os.remove(os.path.join(workdir, LOCK_FILE))
      shutil.rmtree(workdir)
    except OSError:
      pass


@contextlib.contextmanager
def owned(config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool = False, create: bool = True):
  """Checks, locks and claims ``workdir`` for ``config`` while the block runs."""
  check_path(workdir)
  existed = os.path.isfile(os.path.join(workdir, CONFIG_FILE))
  created_dir = not os.path.exists(workdir)
  try:
    with WorkdirLock(workdir):
      claim(config, workdir, allow_config_change, create)
      yield
  except BaseException:
    if create and not existed and jax.process_index() == 0:
      _unclaim(workdir, created_dir)
    raise
