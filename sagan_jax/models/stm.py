"""S1/S2: spatial transformer modules (Section III-B): a localisation network and the warp T.

The localisation network sees the image, its human mask and a spatial code ``z ~ N(0, I)``
(broadcast as extra input channels) and predicts transformation parameters; sampling several codes
gives several transformations of one image (SA-GAN's multi-modal mapping). Its last layer is
zero-initialised, so every STM starts as the identity. The warp itself is `sagan_jax.geometry`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sagan_jax import geometry
from sagan_jax.models.layers import ModuleDef

TRANSFORMS = ("homography", "affine", "tps")


def num_params(transform: str, tps_control_hw: tuple[int, int] = (5, 3)) -> int:
  """Number of transformation parameters the localisation network predicts."""
  if transform == "homography":
    return geometry.HOMOGRAPHY_NUM_PARAMS
  if transform == "affine":
    return geometry.AFFINE_NUM_PARAMS
  if transform == "tps":
    return 2 * tps_control_hw[0] * tps_control_hw[1]
  raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")


def transform_matrices(params: jax.Array, transform: str) -> jax.Array:
  """``[B, 3, 3]`` output→input matrices of homography or affine parameters."""
  if transform == "homography":
    return geometry.homography_from_params(params)
  if transform == "affine":
    return geometry.affine_from_params(params)
  raise ValueError(f"only homography and affine transformations are matrices, got {transform!r}")


def invert_params(params: jax.Array, transform: str) -> jax.Array:
  """Parameters of the inverse transformation: ``-p``.

  Exact for homography and affine (``expm(-A) = expm(A)⁻¹``). A thin-plate spline has no closed-form
  inverse; negated control offsets are its first-order inverse, which is what D_T and the spatial
  cycle loss compare for TPS.
  """
  num_params(transform)  # validates the name
  return -params


def apply_transform(
  images: jax.Array,
  params: jax.Array,
  transform: str,
  tps_control_hw: tuple[int, int] = (5, 3),
  padding: geometry.Padding = "zeros",
) -> jax.Array:
  """Warps ``images[B, H, W, C]`` (RGB and mask together) by predicted parameters ``[B, P]``."""
  if transform == "tps":
    offsets = params.reshape(params.shape[0], *tps_control_hw, 2)
    return geometry.warp_grid(images, geometry.tps_grid(offsets, images.shape[1:3]), padding=padding)
  return geometry.warp(images, transform_matrices(params, transform), padding=padding)


class SpatialTransformer(nn.Module):
  """Localisation network of an STM: ``(images[B, H, W, C], z[B, Z]) → params[B, P]``.

  A stride-2 conv stack with leaky ReLUs, a head (``"pool"``: global average pooling; ``"flatten"``:
  the whole feature map, so the warp can depend on where the person is), one hidden dense layer
  and a zero-initialised output layer (identity at initialisation). Parameters are float32; the output
  is float32 whatever the compute ``dtype``, because the warp needs precise coordinates.
  ``conv`` builds the convolutions (flax's by default).
  """

  transform: str = "homography"
  features: int = 32
  num_layers: int = 4
  hidden: int = 128
  tps_control_hw: tuple[int, int] = (5, 3)
  head: str = "pool"
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv

  @nn.compact
  def __call__(self, images, z):
    b, h, w, _ = images.shape
    codes = jnp.broadcast_to(z[:, None, None, :].astype(images.dtype), (b, h, w, z.shape[-1]))
    x = jnp.concatenate([images, codes], axis=-1).astype(self.dtype)
    for i in range(self.num_layers):
      x = self.conv(self.features * min(2**i, 8), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), dtype=self.dtype)(x)
      x = nn.leaky_relu(x, 0.2)
    if self.head == "pool":
      x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    elif self.head == "flatten":
      x = x.astype(jnp.float32).reshape(b, -1)
    else:
      raise ValueError(f"STM head must be 'pool' or 'flatten', got {self.head!r}")
    x = nn.leaky_relu(nn.Dense(self.hidden)(x), 0.2)
    out = nn.Dense(
      num_params(self.transform, self.tps_control_hw),
      kernel_init=nn.initializers.zeros,
      bias_init=nn.initializers.zeros,
    )(x)
    return out
