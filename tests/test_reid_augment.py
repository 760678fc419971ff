"""Camera augmentation: exact at zero range, the colour response by hand, per image and per step."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sagan_jax import geometry, parallel
from sagan_jax.reid import augment, ide

ZERO = augment.CameraRanges(mix=0, gamma=0, contrast=0, brightness=0, warp=0)


def _images(n=3, h=8, w=4, seed=0):
  return jax.random.uniform(jax.random.key(seed), (n, h, w, 3), minval=-1, maxval=1)


def test_zero_ranges_leave_the_images_unchanged():
  x = _images()
  np.testing.assert_allclose(augment.camera(jax.random.key(1), x, ZERO), x, atol=1e-6)


def test_the_colour_response_matches_a_hand_computation():
  ranges = dataclasses.replace(ZERO, mix=0.25, gamma=0.4, contrast=0.3, brightness=0.1)
  x = _images(n=1, h=2, w=2)
  key = jax.random.key(5)
  k_mix, k_gamma, k_contrast, k_bright, _ = jax.random.split(key, 5)
  u = lambda k, shape, r: np.asarray(jax.random.uniform(k, shape, jnp.float32, -r, r))
  mix = np.eye(3) + u(k_mix, (1, 3, 3), 0.25)[0]
  gamma = np.exp(u(k_gamma, (1, 1, 1, 1), 0.4)).item()
  contrast = np.exp(u(k_contrast, (1, 1, 1, 1), 0.3)).item()
  bright = u(k_bright, (1, 1, 1, 1), 0.1).item()
  rgb = (np.asarray(x[0]) + 1) / 2
  expected = np.clip(rgb @ mix.T, 0, 1) ** gamma
  expected = np.clip((expected - 0.5) * contrast + 0.5 + bright, 0, 1) * 2 - 1
  np.testing.assert_allclose(augment.camera(key, x, ranges)[0], expected, atol=1e-5)


def test_the_gains_mode_keeps_the_mix_diagonal_only():
  # A pure-red and a pure-green pixel stay pure under gains (no channel leaks into another), and
  # leak under the full mix: what keeps a reference able to see hue.
  x = jnp.array([[[[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0]]] * 2])  # 2×2: the warp needs two pixels per axis
  keep_colour = dataclasses.replace(ZERO, mix=0.25)
  gains = dataclasses.replace(keep_colour, channel_mixing=False)
  key = jax.random.key(4)
  out = np.asarray(augment.camera(key, x, gains))
  assert np.all(out[0, 0, 0, 1:] == -1) and np.all(out[0, 0, 1, [0, 2]] == -1)
  mix = np.eye(3) + np.asarray(jax.random.uniform(jax.random.split(key, 5)[0], (1, 3, 3), jnp.float32, -0.25, 0.25))[0]
  np.testing.assert_allclose(out[0, 0, 0, 0], np.clip(mix[0, 0], 0, 1) * 2 - 1, atol=1e-6)  # its own gain
  mixed = np.asarray(augment.camera(key, jnp.broadcast_to(x, (8, 2, 2, 3)), keep_colour))
  assert np.abs(mixed[:, 0, 0, 1:] + 1).max() > 0.01  # some of eight draws leak red into green or blue
  assert augment.RANGES["camera_gains"] == augment.CAMERA_GAINS and not augment.CAMERA_GAINS.channel_mixing


def test_each_image_gets_its_own_draw_and_the_range_is_kept():
  x = jnp.broadcast_to(_images(n=1), (4, 8, 4, 3))
  out = np.asarray(augment.camera(jax.random.key(2), x))
  assert out.min() >= -1 and out.max() <= 1
  differences = [np.abs(out[i] - out[j]).mean() for i in range(4) for j in range(i + 1, 4)]
  assert min(differences) > 0.01


def _tiny_ide():
  """A 16×8 IDE of one block per stage on the default mesh: ``(model, optimizer, mesh, loss)``, where
  ``loss(step)`` is one step's loss from a fresh state on a fixed batch of 8."""
  config = ide.ide_config()
  config.image_size, config.stage_sizes, config.width = (16, 8), (1, 1, 1, 1), 4
  mesh = parallel.make_mesh()
  model = ide.make_model(config, num_classes=3)
  optimizer = optax.sgd(0.1)
  images, labels = _images(n=8, h=16, w=8), jnp.arange(8) % 3
  fresh = lambda: ide.create_state(model, optimizer, config.image_size, 0, mesh)
  return model, optimizer, mesh, lambda step: float(step(fresh(), images, labels)[1]["loss"])


def test_the_train_step_augments_reproducibly_and_refuses_an_unknown_name():
  model, optimizer, mesh, loss = _tiny_ide()
  plain = ide.make_train_step(model, optimizer, mesh)
  camera = ide.make_train_step(model, optimizer, mesh, "camera", seed=0)
  gains = ide.make_train_step(model, optimizer, mesh, "camera_gains", seed=0)
  # The same seed and step draw the same images; the augmented images change the loss.
  assert loss(camera) == loss(camera) != loss(plain)
  assert loss(gains) == loss(gains) not in (loss(plain), loss(camera))
  with pytest.raises(ValueError, match=r"ide\.augment must be one of"):
    ide.make_train_step(model, optimizer, mesh, "colour")


def test_the_view_augment_is_a_small_homography_and_nothing_else():
  # A flat colour stays exactly that colour (border padding, no colour response); a textured image
  # is the warp the fifth key draws within ±0.02, by the geometry module directly.
  assert augment.RANGES["view"] == augment.VIEW and augment.VIEW.warp == 0.02 and "view" in augment.AUGMENTS
  key = jax.random.key(7)
  flat = jnp.broadcast_to(jnp.array([0.3, -0.6, 0.1]), (4, 8, 4, 3))
  np.testing.assert_allclose(augment.camera(key, flat, augment.VIEW), flat, atol=1e-6)
  x = _images(n=4, h=16, w=8)
  k_warp = jax.random.split(key, 5)[4]
  params = jax.random.uniform(k_warp, (4, geometry.HOMOGRAPHY_NUM_PARAMS), jnp.float32, -0.02, 0.02)
  expected = geometry.warp((x + 1) / 2, geometry.homography_from_params(params), padding="border") * 2 - 1
  out = augment.camera(key, x, augment.VIEW)
  np.testing.assert_allclose(out, expected, atol=1e-5)
  # Small next to the camera augment's own view (±0.08) on the same images, and not nothing.
  wide = augment.camera(key, x, dataclasses.replace(augment.VIEW, warp=0.08))
  assert 0.001 < float(jnp.abs(out - x).mean()) < float(jnp.abs(wide - x).mean())


def test_view_range_sizes_the_view_augment_alone_and_reaches_the_train_step():
  # `ranges` swaps the view's sl(3) range and nothing else; the other augments ignore it.
  assert augment.ranges("view", 0.06) == dataclasses.replace(augment.VIEW, warp=0.06)
  assert augment.ranges("view") == augment.VIEW and augment.ranges("camera", 0.06) == augment.CAMERA
  with pytest.raises(ValueError, match="augmentation must be one of"):
    augment.ranges("colour")
  # The same key draws params = range × the same uniforms: ±0.06 is exactly three times ±0.02's warp.
  x, key = _images(n=4, h=16, w=8), jax.random.key(7)
  k_warp = jax.random.split(key, 5)[4]
  unit = jax.random.uniform(k_warp, (4, geometry.HOMOGRAPHY_NUM_PARAMS), jnp.float32, -1, 1)
  expected = geometry.warp((x + 1) / 2, geometry.homography_from_params(0.06 * unit), padding="border") * 2 - 1
  np.testing.assert_allclose(augment.camera(key, x, augment.ranges("view", 0.06)), expected, atol=1e-5)
  # In the train step: the view at range 0 is the identity warp, so its step is the plain one; 0.06's is not.
  model, optimizer, mesh, loss = _tiny_ide()
  plain = loss(ide.make_train_step(model, optimizer, mesh))
  assert loss(ide.make_train_step(model, optimizer, mesh, "view", 0, view_range=0.0)) == pytest.approx(plain, abs=1e-6)
  assert abs(loss(ide.make_train_step(model, optimizer, mesh, "view", 0, view_range=0.06)) - plain) > 1e-4
