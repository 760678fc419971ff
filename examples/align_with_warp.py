"""Use sagan_jax's differentiable warp and losses in your own JAX code.

    python examples/align_with_warp.py

Recovers an unknown homography by gradient descent through `geometry.warp` (the way SA-GAN's
spatial transformers learn), scores the result with `fidelity.viewpoint_error`, and trains a
linear embedding with the contrastive loss of eq. 6. Needs only the core install
(``pip install sagan_jax``: jax, flax, optax, numpy, ml-collections); a few seconds on a CPU.
"""

import jax
import jax.numpy as jnp
import optax

from sagan_jax import fidelity, geometry, losses


def scene(h=48, w=32):
  """A soft-edged disc over a bar: an image with structure in both directions, [1, H, W, 3]."""
  ys, xs = jnp.meshgrid(jnp.linspace(-1, 1, h), jnp.linspace(-1, 1, w), indexing="ij")
  disc = jax.nn.sigmoid(20 * (0.3 - jnp.hypot(xs, ys + 0.4)))
  bar = jax.nn.sigmoid(20 * (0.25 - jnp.abs(xs))) * jax.nn.sigmoid(20 * (ys - 0.0))
  return jnp.stack([disc, bar, 0.5 * disc + 0.5 * bar], -1)[None] * 2 - 1


def align(steps=300):
  source = scene()
  p_true = jnp.array([[0.05, 0.0, 0.1, 0.0, -0.05, 0.15, 0.0, -0.25]])  # sl(3) parameters: shift, scale, tilt
  h_true = geometry.homography_from_params(p_true)
  target = geometry.warp(source, h_true, padding="border")

  def loss(p):
    return jnp.mean(jnp.abs(geometry.warp(source, geometry.homography_from_params(p), padding="border") - target))

  optimizer = optax.adam(1e-2)

  @jax.jit
  def step(p, opt_state):
    value, grad = jax.value_and_grad(loss)(p)
    updates, opt_state = optimizer.update(grad, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, value

  p = jnp.zeros_like(p_true)
  opt_state = optimizer.init(p)
  before = float(fidelity.viewpoint_error(geometry.homography_from_params(p), h_true[0])[0])
  for _ in range(steps):
    p, opt_state, value = step(p, opt_state)
  after = float(fidelity.viewpoint_error(geometry.homography_from_params(p), h_true[0])[0])
  print(f"homography recovery: viewpoint error {before:.3f} -> {after:.3f} (L1 {float(value):.4f})")
  return before, after


def embed(steps=200):
  """Eq. 6 on toy data: positives are noisy copies of an anchor, negatives other anchors."""
  key_a, key_n, key_w = jax.random.split(jax.random.key(0), 3)
  anchors = jax.random.normal(key_a, (64, 16))
  positives = anchors + 0.3 * jax.random.normal(key_n, anchors.shape)
  negatives = jnp.roll(anchors, 1, axis=0)
  others = jnp.concatenate([positives, negatives])
  is_positive = jnp.concatenate([jnp.ones(64), jnp.zeros(64)])

  def loss(weights):
    project = lambda v: v @ weights
    return losses.contrastive_loss(
      project(jnp.concatenate([anchors, anchors])), project(others), is_positive, margin=2.0
    )

  weights = 0.1 * jax.random.normal(key_w, (16, 8))
  optimizer = optax.adam(1e-2)
  opt_state = optimizer.init(weights)
  before = float(loss(weights))
  for _ in range(steps):
    grad = jax.grad(loss)(weights)
    updates, opt_state = optimizer.update(grad, opt_state)
    weights = optax.apply_updates(weights, updates)
  after = float(loss(weights))
  print(f"contrastive loss (eq. 6): {before:.3f} -> {after:.3f}")
  return before, after


if __name__ == "__main__":
  view_before, view_after = align()
  loss_before, loss_after = embed()
  # The example doubles as a check: both must have learned.
  assert view_after < 0.1 * view_before, (view_before, view_after)
  assert loss_after < 0.5 * loss_before, (loss_before, loss_after)
