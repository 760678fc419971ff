"""Differentiable augmentation of the critics' inputs (DiffAugment, Zhao et al. 2020), pure functions.

Not in the paper. A critic that sees few target images (a VIPeR split adapts on 632, a PRID2011
split on 200) can memorise them; DiffAugment draws one random transformation per image for the
real and the fake inputs alike, in the critics' and the generators' updates, so the critic judges
distributions the generators can still match, and the gradient reaches them through it.

Only the colour-preserving transformations are offered: translation and cutout. DiffAugment's
colour jitter (brightness, saturation, contrast) would blur exactly the colour gap G1 must close.
Images are ``[B, H, W, C]`` in the pipeline's [-1, 1]; the filled value 0 is mid-grey (and
"background" in a mask channel), as DiffAugment's zero padding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

POLICIES = ("translation", "cutout")
TRANSLATION_RATIO = 0.125  # DiffAugment's: shifts of up to 1/8 of the height and of the width
CUTOUT_RATIO = 0.5  # DiffAugment's: a patch of half the height by half the width


def parse_policy(policy: str) -> tuple[str, ...]:
  """``"translation,cutout"`` → ``("translation", "cutout")``; ``"none"`` or ``""`` → ``()``.

  Raises ValueError naming an unknown part.
  """
  parts = tuple(p.strip() for p in policy.split(",") if p.strip() and p.strip() != "none")
  unknown = [p for p in parts if p not in POLICIES]
  if unknown:
    raise ValueError(f"unknown augmentation {unknown}: choose from {', '.join(POLICIES)}, comma-separated, or none")
  return parts


def shift(images: jax.Array, dy: jax.Array, dx: jax.Array, max_dy: int, max_dx: int) -> jax.Array:
  """Moves each image's content by ``(dy[b], dx[b])`` pixels (down, right), filling with 0.

  ``|dy| ≤ max_dy`` and ``|dx| ≤ max_dx`` (static bounds of the zero padding).
  """
  _, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (max_dy, max_dy), (max_dx, max_dx), (0, 0)))
  one = lambda img, y, x: jax.lax.dynamic_slice(img, (max_dy - y, max_dx - x, 0), (h, w, c))
  return jax.vmap(one)(padded, dy, dx)


def translation(key: jax.Array, images: jax.Array, ratio: float = TRANSLATION_RATIO) -> jax.Array:
  """Each image shifted by a uniform integer offset in ``[-r·H, r·H] × [-r·W, r·W]``, zero-filled."""
  b, h, w, _ = images.shape
  max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
  ky, kx = jax.random.split(key)
  dy = jax.random.randint(ky, (b,), -max_dy, max_dy + 1)
  dx = jax.random.randint(kx, (b,), -max_dx, max_dx + 1)
  return shift(images, dy, dx, max_dy, max_dx)


def cutout(key: jax.Array, images: jax.Array, ratio: float = CUTOUT_RATIO) -> jax.Array:
  """Each image with one ``r·H × r·W`` rectangle set to 0, its centre uniform over the frame (so it
  may be cut by the border), as DiffAugment draws it."""
  b, h, w, _ = images.shape
  ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
  ky, kx = jax.random.split(key)
  top = jax.random.randint(ky, (b,), 0, h + (1 - ch % 2)) - ch // 2
  left = jax.random.randint(kx, (b,), 0, w + (1 - cw % 2)) - cw // 2
  rows, cols = jnp.arange(h), jnp.arange(w)
  in_rows = (rows[None] >= top[:, None]) & (rows[None] < top[:, None] + ch)
  in_cols = (cols[None] >= left[:, None]) & (cols[None] < left[:, None] + cw)
  keep = 1.0 - (in_rows[:, :, None] & in_cols[:, None, :]).astype(images.dtype)
  return images * keep[..., None]


def augment(key: jax.Array, images: jax.Array, policy: tuple[str, ...]) -> jax.Array:
  """``policy``'s transformations in its order, each with its own part of ``key``; () is the identity."""
  functions = {"translation": translation, "cutout": cutout}
  for name, k in zip(policy, jax.random.split(key, max(len(policy), 1))):
    images = functions[name](k, images)
  return images
