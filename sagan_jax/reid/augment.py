"""Camera augmentation for IDE training: what a different camera may do to a person, at random.

``ide.augment = "camera"`` applies, per image, on the device inside the train step:

* a colour response: a 3×3 channel mix ``I + U(-m, m)`` on RGB in [0, 1] (``"camera_gains"``: its
  diagonal only, per-channel gains as a white balance makes), then a gamma
  ``exp(U(-g, g))``, a contrast ``exp(U(-c, c))`` about mid-grey and a brightness shift ``U(-b, b)``;
* a viewpoint: a homography ``homography_from_params(U(-w, w)^8)`` (the spatial transformer's sl(3)
  parametrisation), border-padded.

An IDE trained so learns identity cues that survive such changes. The translation report's
reference IDE uses it (`sagan_jax.experiments.report`), so that ``identity_kept`` does not count a
camera-like change of colour or view as a lost identity. The ranges are `CAMERA`'s; the default
``"none"`` is the paper's IDE (flips only). A full channel mix teaches a network to ignore hue, so that
recolouring a person's clothes keeps their identity in its features; the gains keep hue apart
(BENCHMARKS.md §7). ``"view"`` is the viewpoint alone, at ±``ide.view_range`` (0.02 by default: sized
to the spread between one photograph's ten translations under the learnt spatial codes on one CUHK01 →
VIPeR development pair, `bench/code_spread.py`; each config may size its own), the control that
says what SA-GAN [M=10] adds beyond that many random views of M = 1's images.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from sagan_jax import geometry

AUGMENTS = ("none", "camera", "camera_gains", "view")


@dataclasses.dataclass(frozen=True)
class CameraRanges:
  mix: float = 0.25  # off-identity channel mixing
  gamma: float = 0.4  # log-gamma
  contrast: float = 0.3  # log-contrast
  brightness: float = 0.1  # in [0, 1] units
  warp: float = 0.08  # sl(3) parameters
  channel_mixing: bool = True  # False: the mix's diagonal only (per-channel gains)


CAMERA = CameraRanges()
CAMERA_GAINS = CameraRanges(channel_mixing=False)
# The colour ops stay in the path at zero range, so "view" draws the same warps as "camera" would from a key.
VIEW = CameraRanges(mix=0.0, gamma=0.0, contrast=0.0, brightness=0.0, warp=0.02, channel_mixing=False)
RANGES = {"camera": CAMERA, "camera_gains": CAMERA_GAINS, "view": VIEW}


def ranges(name: str, view_range: float = VIEW.warp) -> CameraRanges:
  """The ranges of augmentation ``name``; ``view_range`` sets the sl(3) range of ``"view"`` only."""
  if name not in RANGES:
    raise ValueError(f"augmentation must be one of {tuple(RANGES)}, got {name!r}")
  return dataclasses.replace(VIEW, warp=view_range) if name == "view" else RANGES[name]


def camera(key: jax.Array, images: jax.Array, ranges: CameraRanges = CAMERA) -> jax.Array:
  """``images[B, H, W, 3]`` in [-1, 1], each given its own random colour response and viewpoint."""
  b = images.shape[0]
  k_mix, k_gamma, k_contrast, k_bright, k_warp = jax.random.split(key, 5)
  u = lambda k, shape, r: jax.random.uniform(k, shape, jnp.float32, -r, r)
  x = (images.astype(jnp.float32) + 1) / 2
  mix = jnp.eye(3) + u(k_mix, (b, 3, 3), ranges.mix)
  if not ranges.channel_mixing:
    mix = mix * jnp.eye(3)
  x = jnp.clip(jnp.einsum("bhwc,bdc->bhwd", x, mix), 0, 1)
  x = x ** jnp.exp(u(k_gamma, (b, 1, 1, 1), ranges.gamma))
  contrast = jnp.exp(u(k_contrast, (b, 1, 1, 1), ranges.contrast))
  x = (x - 0.5) * contrast + 0.5 + u(k_bright, (b, 1, 1, 1), ranges.brightness)
  h = geometry.homography_from_params(u(k_warp, (b, geometry.HOMOGRAPHY_NUM_PARAMS), ranges.warp))
  x = geometry.warp(jnp.clip(x, 0, 1), h, padding="border")
  return (x * 2 - 1).astype(images.dtype)
