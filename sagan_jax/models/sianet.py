"""SiaNet: the Siamese embedding network of SPGAN (Deng et al. 2018), used by eq. 6."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from sagan_jax import ops


class SiaNet(nn.Module):
  """SPGAN's SiaNet: four (4×4 stride-2 conv, leaky ReLU, 2×2 max-pool) stages, then one FC layer.

  Returns L2-normalised embeddings ``[B, embed_dim]`` in float32, so pair distances lie in [0, 2]
  and the contrastive margin (2, SPGAN's value) pushes negative pairs towards opposite directions.
  ``gradient_impl``: see ``sagan_jax.ops.conv_function``.
  """

  widths: Sequence[int] = (64, 128, 256, 512)  # SPGAN's feature maps
  embed_dim: int = 128  # SPGAN's FC output
  dtype: Any = jnp.float32
  gradient_impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    x = x.astype(self.dtype)
    for width in self.widths:
      x = nn.Conv(width, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), dtype=self.dtype,
                  conv_general_dilated=ops.conv_function(self.gradient_impl))(x)
      x = nn.leaky_relu(x, 0.2)
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
    x = nn.Dense(self.embed_dim, dtype=self.dtype)(x.reshape(x.shape[0], -1))
    x = x.astype(jnp.float32)
    return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)
