"""Which images each stage reads: the config's source and target datasets, prepared with TFDS.

Which subsets each adaptation, IDE and evaluation reads (viewpoint groups, PRID2011 splits) is the
run's plan, `sagan_jax.experiments.plan`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from sagan_jax import fileio, parallel
from sagan_jax.data import builders, synthetic, two_camera
from sagan_jax.errors import ConfigError

MARKET_LIKE = ("market1501", "dukemtmc_reid")


class Concat(Sequence):
  """Several random-access sources read as one (PRID's two camera splits)."""

  def __init__(self, parts: Sequence):
    self._parts = list(parts)
    self._offsets = np.cumsum([0] + [len(p) for p in self._parts])

  def __len__(self) -> int:
    return int(self._offsets[-1])

  def __getitem__(self, i: int):
    part = int(np.searchsorted(self._offsets, int(i), side="right") - 1)
    return self._parts[part][int(i) - int(self._offsets[part])]


def _taking_turns(path: str, fn, *args, **kwargs):
  """``fn(*args, **kwargs)`` as a call that holds ``path``'s machine lock while it runs: other runs on
  this machine may be generating or preparing the same data. The lock covers the call only, never
  `parallel.process_0_first`'s barriers, which the processes of one job on one machine wait at."""

  def call():
    with fileio.machine_lock(path):
      return fn(*args, **kwargs)

  return call


class Datasets:
  def __init__(self, config):
    self.config = config
    d = config.data
    if d.synthetic_dir:
      self.synthetic_dir = os.path.abspath(d.synthetic_dir)
      self.manual_dirs = {
        "source": os.path.join(self.synthetic_dir, "source"),
        "target": os.path.join(self.synthetic_dir, "target"),
      }
      default_data_dir = os.path.join(self.synthetic_dir, synthetic.PREPARED_DIR)
    else:
      self.synthetic_dir = None
      self.manual_dirs = {"source": d.source.manual_dir, "target": d.target.manual_dir}
      default_data_dir = os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
      for role in ("source", "target"):
        if not self.manual_dirs[role]:
          raise ConfigError(
            f"config.data.{role}.manual_dir is empty: set it to the folder holding the extracted "
            f"{d[role].name} dataset (see docs/data.md)"
          )
    self.names = {"source": d.source.name, "target": d.target.name}
    for role, name in self.names.items():
      if name not in builders.BUILDERS:
        raise ConfigError(f"config.data.{role}.name={name!r}: expected one of {sorted(builders.BUILDERS)}")
    if self.names["source"] in ("prid2011", "viper"):
      raise ConfigError(
        f"config.data.source.name={self.names['source']!r}: it has no labelled training split here; use it as "
        "the target (a labelled source: market1501, dukemtmc_reid or cuhk01)"
      )
    self.data_dir = d.data_dir or default_data_dir
    self._builders = {}

  def ensure_synthetic(self) -> None:
    """Generates the synthetic benchmark when the config uses one (once: its metadata file marks it complete)."""
    if self.synthetic_dir:
      spec = synthetic.BenchmarkSpec(**self.config.data.synthetic_spec.to_dict())
      generate = _taking_turns(self.synthetic_dir, synthetic.generate, self.synthetic_dir, spec)
      parallel.process_0_first("synthetic benchmark", generate)

  @property
  def with_masks(self) -> bool:
    return self.config.data.masks in ("data", "unet") and self.config.sagan.use_mask

  @property
  def mask_mode(self) -> str:
    """The pipeline's mask mode for SA-GAN and translation."""
    if not self.config.sagan.use_mask:
      return "unused"  # the CycleGAN baselines see RGB only: no mask is read, none is missing
    return "data" if self.with_masks else "ones"

  def builder(self, role: str):
    if role not in self._builders:
      self.ensure_synthetic()
      data_dir = self.data_dir
      if self.names["source"] == self.names["target"]:  # two datasets with one builder name (synthetic)
        data_dir = os.path.join(data_dir, role)
      self._builders[role] = parallel.process_0_first(
        f"prepare {role}",
        _taking_turns(
          os.path.join(data_dir, self.names[role]),
          builders.prepare,
          self.names[role],
          self.manual_dirs[role],
          data_dir,
          with_masks=self.with_masks,
          skip_corrupt=self.config.data.skip_corrupt,
        ),
      )
    return self._builders[role]

  def source_train(self):
    """The source's labelled training images (random access)."""
    return self.builder("source").as_data_source("train")

  def target_protocol(self) -> two_camera.Protocol | None:
    """The target's split protocol when it is a two-camera set (PRID2011, VIPeR, CUHK01), else None
    (a query/gallery target: Market-1501, DukeMTMC-reID, the synthetic benchmark)."""
    return two_camera.PROTOCOLS.get(self.names["target"])
