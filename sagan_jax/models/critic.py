"""D1/D2: PatchGAN critics for the WGAN objective (eq. 1), on RGB + human mask."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from sagan_jax.models.layers import ModuleDef

NORMS = ("layer", "instance", "none")


class PatchCritic(nn.Module):
  """The 70×70 PatchGAN of pix2pix/CycleGAN as a Wasserstein critic: no sigmoid, and no batch norm.

  Batch norm would couple the samples of a batch and break WGAN-GP's per-sample gradient penalty,
  so the hidden layers use layer norm by default (as WGAN-GP recommends), instance norm or none.
  Returns one score per patch, ``[B, h, w]`` in float32; the critic's value of an image is the mean.
  ``conv`` builds the convolutions (flax's by default); WGAN-GP differentiates their gradients again.
  """

  features: int = 64  # pix2pix's ndf
  num_layers: int = 3  # stride-2 layers after the first: 3 gives the 70×70 receptive field
  norm: str = "layer"
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv
  outputs: int = 1  # > 1: one score map per condition, ``[B, h, w, outputs]`` (a target camera each)

  @nn.compact
  def __call__(self, x):
    if self.norm not in NORMS:
      raise ValueError(f"critic norm must be one of {NORMS}, got {self.norm!r}")
    x = x.astype(self.dtype)
    pad = ((1, 1), (1, 1))
    x = self.conv(self.features, (4, 4), strides=(2, 2), padding=pad, dtype=self.dtype)(x)
    x = nn.leaky_relu(x, 0.2)
    for i in range(1, self.num_layers + 1):
      stride = 2 if i < self.num_layers else 1
      mult = min(2**i, 8)
      x = self.conv(self.features * mult, (4, 4), strides=(stride, stride), padding=pad, dtype=self.dtype)(x)
      x = nn.leaky_relu(self._norm()(x), 0.2)
    x = self.conv(self.outputs, (4, 4), strides=(1, 1), padding=pad, dtype=self.dtype)(x)
    return (x[..., 0] if self.outputs == 1 else x).astype(jnp.float32)

  def _norm(self):
    if self.norm == "layer":
      # Two-pass variance, as the generator's instance norm (see models/generator.py).
      return nn.LayerNorm(reduction_axes=(-3, -2, -1), feature_axes=-1, use_fast_variance=False, dtype=self.dtype)
    if self.norm == "instance":
      return nn.InstanceNorm(use_fast_variance=False, dtype=self.dtype)
    return lambda x: x
