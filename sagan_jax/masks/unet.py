"""The mask network: a U-Net (Ronneberger et al. 2015) predicting person-foreground logits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class DoubleConv(nn.Module):
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for _ in range(2):
      x = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False, dtype=self.dtype)(x)
      # Group norm, not batch norm: the prediction for one crop never depends on its batch.
      x = nn.relu(nn.GroupNorm(num_groups=min(8, self.features), use_fast_variance=False, dtype=self.dtype)(x))
    return x


class UNet(nn.Module):
  """Encoder (``len(features)`` levels, 2× max-pooling between them), decoder with skip connections.

  Input ``[B, H, W, 3]`` RGB in [-1, 1]; output ``[B, H, W, 1]`` float32 logits of "person".
  H and W must be divisible by ``2 ** (len(features) - 1)``.

  Built from flax's layers on every backend: `sagan_jax.cpu`'s product gradients gave it nothing
  (its stride-1 3×3 convolutions are the kind XLA-CPU runs well; `python -m bench.bench_convs`).
  """

  features: Sequence[int] = (32, 64, 128, 256)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    factor = 2 ** (len(self.features) - 1)
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(
        f"the U-Net pools {len(self.features) - 1} times: image height and width must be "
        f"divisible by {factor}, got {x.shape[1:3]}"
      )
    x = x.astype(self.dtype)
    skips = []
    for i, f in enumerate(self.features):
      if i:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      x = DoubleConv(f, self.dtype)(x)
      skips.append(x)
    for f, skip in zip(reversed(self.features[:-1]), reversed(skips[:-1])):
      b, h, w, c = x.shape
      x = jax.image.resize(x, (b, 2 * h, 2 * w, c), "nearest")
      x = nn.Conv(f, (3, 3), padding="SAME", dtype=self.dtype)(x)
      x = DoubleConv(f, self.dtype)(jnp.concatenate([skip, x], axis=-1))
    return nn.Conv(1, (1, 1), dtype=self.dtype)(x).astype(jnp.float32)
