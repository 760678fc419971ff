"""DiffAugment on the critics' inputs: exact shifts and cut-outs against brute force, and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.sagan import augment

H, W = 16, 8


def _shifted(img, dy, dx):
  """Brute force: ``img``'s content moved down ``dy`` and right ``dx``, zero-filled."""
  out = np.zeros_like(img)
  for i in range(img.shape[0]):
    for j in range(img.shape[1]):
      if 0 <= i - dy < img.shape[0] and 0 <= j - dx < img.shape[1]:
        out[i, j] = img[i - dy, j - dx]
  return out


def _images(n, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, H, W, 4)).astype(np.float32)


def _offset(out, img, max_dy=2, max_dx=1):
  """The one shift that turns ``img`` into ``out`` (brute force)."""
  (match,) = [
    (a, b)
    for a in range(-max_dy, max_dy + 1)
    for b in range(-max_dx, max_dx + 1)
    if np.array_equal(out, _shifted(img, a, b))
  ]
  return match


def test_shift_matches_brute_force_at_every_offset_up_to_the_bound():
  offsets = [(dy, dx) for dy in (-2, 0, 1, 2) for dx in (-1, 0, 1)]
  images = _images(len(offsets))
  dy, dx = (jnp.array(v) for v in zip(*offsets))
  out = np.asarray(augment.shift(jnp.asarray(images), dy, dx, 2, 1))
  for k, (a, b) in enumerate(offsets):
    np.testing.assert_array_equal(out[k], _shifted(images[k], a, b), err_msg=f"offset {(a, b)}")


def test_translation_shifts_each_image_by_one_offset_within_an_eighth_and_reaches_both_ends():
  images = _images(64, seed=1)
  out = np.asarray(augment.translation(jax.random.key(3), jnp.asarray(images)))
  found = [_offset(out[k], images[k]) for k in range(len(images))]  # random content: one offset fits
  assert {a for a, _ in found} == {-2, -1, 0, 1, 2}  # ±16 / 8 rows
  assert {b for _, b in found} == {-1, 0, 1}  # ±8 / 8 columns


def test_cutout_zeroes_one_half_by_half_rectangle_in_every_channel_and_nothing_else():
  ones = np.ones((200, H, W, 4), np.float32)
  out = np.asarray(augment.cutout(jax.random.key(5), jnp.asarray(ones)))
  assert set(np.unique(out)) <= {0.0, 1.0}
  clipped = 0
  for k in range(len(out)):
    cut = out[k] == 0
    assert (cut == cut[..., :1]).all()  # all channels (RGB and mask) together
    rows, cols = np.nonzero(cut[..., 0].any(1))[0], np.nonzero(cut[..., 0].any(0))[0]
    assert len(rows) and len(cols)  # a centre inside the frame always cuts something
    box = np.zeros((H, W), bool)
    box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
    np.testing.assert_array_equal(cut[..., 0], box)  # one axis-aligned rectangle
    assert len(rows) <= H // 2 and len(cols) <= W // 2
    touches_border = rows.min() == 0 or rows.max() == H - 1 or cols.min() == 0 or cols.max() == W - 1
    if len(rows) < H // 2 or len(cols) < W // 2:
      assert touches_border  # only the border makes it smaller
      clipped += 1
  assert 0 < clipped < len(out)


def test_gradients_reach_exactly_the_input_pixels_that_survive():
  x = jnp.asarray(_images(4, seed=2))
  key = jax.random.key(7)
  grad = np.asarray(jax.grad(lambda v: jnp.sum(augment.cutout(key, v)))(x))
  np.testing.assert_array_equal(grad, np.asarray(augment.cutout(key, jnp.ones_like(x))))  # 1 outside the patch
  out = np.asarray(augment.translation(key, x))
  grad = np.asarray(jax.grad(lambda v: jnp.sum(augment.translation(key, v)))(x))
  for k in range(len(out)):
    dy, dx = _offset(out[k], np.asarray(x[k]))
    ones = np.ones(x.shape[1:], np.float32)
    np.testing.assert_array_equal(grad[k], _shifted(ones, -dy, -dx))  # 1 where a pixel lands inside the frame


def test_policy_parsing_and_the_empty_policy_is_the_identity():
  assert augment.parse_policy("none") == ()
  assert augment.parse_policy("") == ()
  assert augment.parse_policy("translation, cutout") == ("translation", "cutout")
  with pytest.raises(ValueError, match=r"unknown augmentation \['color'\]"):
    augment.parse_policy("translation,color")
  x = jnp.asarray(_images(2))
  np.testing.assert_array_equal(np.asarray(augment.augment(jax.random.key(0), x, ())), np.asarray(x))
