"""D_T: the spatial critic, judging transformation parameters (Section III-B, eq. 1)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class SpatialCritic(nn.Module):
  """An MLP Wasserstein critic on transformation parameters ``[B, P]`` → scores ``[B]``.

  D_T compares the transformations S1 predicts (T_xy) with the inverses of those S2 predicts,
  (T_yx)⁻¹. With the Lie-algebra parameterisations of `sagan_jax.geometry` the inverse of ``p`` is
  exactly ``-p``, so the critic works directly on parameter vectors. No normalisation layers, so
  the gradient penalty stays per-sample.
  """

  hidden: int = 128
  num_layers: int = 2
  dtype: Any = jnp.float32
  outputs: int = 1  # > 1: one score per condition, ``[B, outputs]`` (a target camera each)

  @nn.compact
  def __call__(self, p):
    x = p.astype(self.dtype)
    for _ in range(self.num_layers):
      x = nn.leaky_relu(nn.Dense(self.hidden, dtype=self.dtype)(x), 0.2)
    x = nn.Dense(self.outputs, dtype=self.dtype)(x)
    return (x[..., 0] if self.outputs == 1 else x).astype(jnp.float32)
