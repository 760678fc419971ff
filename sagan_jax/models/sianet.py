"""SiaNet: the Siamese embedding network of SPGAN (Deng et al. 2018), used by eq. 6."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from sagan_jax.models.layers import ModuleDef


class SiaNet(nn.Module):
  """SPGAN's SiaNet: four (4×4 stride-2 conv, leaky ReLU, 2×2 max-pool) stages, then one FC layer.

  Returns L2-normalised embeddings ``[B, embed_dim]`` in float32, so pair distances lie in [0, 2]
  and the contrastive margin (2, SPGAN's value) pushes negative pairs towards opposite directions.
  ``conv`` and ``max_pool`` build those layers (flax's by default).
  """

  widths: Sequence[int] = (64, 128, 256, 512)  # SPGAN's feature maps
  embed_dim: int = 128  # SPGAN's FC output
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv
  max_pool: Callable = nn.max_pool

  @nn.compact
  def __call__(self, x):
    x = x.astype(self.dtype)
    for width in self.widths:
      x = self.conv(width, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), dtype=self.dtype)(x)
      x = nn.leaky_relu(x, 0.2)
      x = self.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
    x = nn.Dense(self.embed_dim, dtype=self.dtype)(x.reshape(x.shape[0], -1))
    x = x.astype(jnp.float32)
    return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)
