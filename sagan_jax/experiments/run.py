"""What every stage of an experiment reads: its config, workdir, mesh, datasets, plan and seeds."""

from __future__ import annotations

import functools
import json
import os
import zlib

import jax
import ml_collections
import numpy as np

from sagan_jax import fileio, parallel, preemption, workdir
from sagan_jax.experiments import plan as plan_lib
from sagan_jax.experiments.datasets import Datasets
from sagan_jax.models.layers import Layers


def derived_seed(seed: int, stream: str) -> int:
  """A seed of its own for each named stream ("ide", "sagan/target_batches", ...), from the run's one seed.

  Streams are independent of each other and of the order stages ask for them; a 31-bit int, as
  the input pipelines and ``jax.random.key`` take.
  """
  state = np.random.SeedSequence([seed, zlib.crc32(stream.encode())]).generate_state(1, np.uint32)
  return int(state[0] >> 1)


class Run:
  """One experiment in one workdir: the config, the stages to run, mesh, datasets, plan, SIGTERM poll, layers."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    workdir_path: str,
    stages: tuple[str, ...],
    sigterm: preemption.SigtermFlag | None = None,
    record_plan: bool = True,
    layers: Layers = Layers(),
  ):
    self.config, self.workdir, self.stages = config, os.path.abspath(workdir_path), stages
    self.record_plan, self.layers = record_plan, layers
    self.stop = preemption.StopPoll(sigterm)
    self.mesh = parallel.make_mesh()
    self.datasets = Datasets(config)
    self.is_main = jax.process_index() == 0
    self.tensorboard = os.path.join(self.workdir, "tensorboard")

  @functools.cached_property
  def plan(self) -> plan_lib.Plan:
    """The run's adaptations, IDE models and evaluations (built on first use: after the masks
    stage, since viewpoint groups may be derived from the masks it writes)."""
    made = plan_lib.build(self.config, self.datasets, self.stages)
    if self.record_plan and self.is_main:
      os.makedirs(self.workdir, exist_ok=True)
      fileio.write_text_atomic(self.path(workdir.PLAN_FILE), json.dumps(made.as_json(), indent=1))
    return made

  def seed(self, stream: str) -> int:
    return derived_seed(self.config.seed, stream)

  def path(self, *parts: str) -> str:
    return os.path.join(self.workdir, *parts)

  @property
  def image_size(self) -> tuple[int, int]:
    return tuple(self.config.sagan.image_size)
