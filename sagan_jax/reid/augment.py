"""Camera augmentation for IDE training: what a different camera may do to a person, at random.

``ide.augment = "camera"`` applies, per image, on the device inside the train step:

* a colour response: a 3×3 channel mix ``I + U(-m, m)`` on RGB in [0, 1], then a gamma
  ``exp(U(-g, g))``, a contrast ``exp(U(-c, c))`` about mid-grey and a brightness shift ``U(-b, b)``;
* a viewpoint: a homography ``homography_from_params(U(-w, w)^8)`` (the spatial transformer's sl(3)
  parametrisation), border-padded.

An IDE trained so learns identity cues that survive such changes. The translation report's
reference IDE uses it (`sagan_jax.experiments.report`), so that ``identity_kept`` does not count a
camera-like change of colour or view as a lost identity. The ranges are `CAMERA`'s; the default
``"none"`` is the paper's IDE (flips only).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from sagan_jax import geometry

AUGMENTS = ("none", "camera")


@dataclasses.dataclass(frozen=True)
class CameraRanges:
  mix: float = 0.25  # off-identity channel mixing
  gamma: float = 0.4  # log-gamma
  contrast: float = 0.3  # log-contrast
  brightness: float = 0.1  # in [0, 1] units
  warp: float = 0.08  # sl(3) parameters


CAMERA = CameraRanges()


def camera(key: jax.Array, images: jax.Array, ranges: CameraRanges = CAMERA) -> jax.Array:
  """``images[B, H, W, 3]`` in [-1, 1], each given its own random colour response and viewpoint."""
  b = images.shape[0]
  k_mix, k_gamma, k_contrast, k_bright, k_warp = jax.random.split(key, 5)
  u = lambda k, shape, r: jax.random.uniform(k, shape, jnp.float32, -r, r)
  x = (images.astype(jnp.float32) + 1) / 2
  mix = jnp.eye(3) + u(k_mix, (b, 3, 3), ranges.mix)
  x = jnp.clip(jnp.einsum("bhwc,bdc->bhwd", x, mix), 0, 1)
  x = x ** jnp.exp(u(k_gamma, (b, 1, 1, 1), ranges.gamma))
  contrast = jnp.exp(u(k_contrast, (b, 1, 1, 1), ranges.contrast))
  x = (x - 0.5) * contrast + 0.5 + u(k_bright, (b, 1, 1, 1), ranges.brightness)
  h = geometry.homography_from_params(u(k_warp, (b, geometry.HOMOGRAPHY_NUM_PARAMS), ranges.warp))
  x = geometry.warp(jnp.clip(x, 0, 1), h, padding="border")
  return (x * 2 - 1).astype(images.dtype)
