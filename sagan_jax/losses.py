"""SA-GAN's losses (Section III-C, equations 1–7) as pure functions of arrays.

Nothing here holds state or reads a config: pass arrays (and, for the gradient penalty, a critic
function), get scalars. The equation each function implements is named in its docstring, so
grepping "eq. 3" or "SCL" finds it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

# --------------------------------------------------------------------------------------------------
# Adversarial terms (eq. 1).


def wgan_critic_loss(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
  """Eq. 1, critic side: ``E[D(fake)] - E[D(real)]``, minimised by the critic.

  For D1: fake = G1(S1(x)), real = y. For the spatial critic D_T: fake = T_xy, real = (T_yx)⁻¹.
  Its negation is the critic's estimate of the Wasserstein distance.
  """
  return jnp.mean(fake_scores) - jnp.mean(real_scores)


def wgan_generator_loss(fake_scores: jax.Array) -> jax.Array:
  """Eq. 1, generator side: ``-E[D(fake)]``, minimised by G1 and S1 (for D1 and D_T alike)."""
  return -jnp.mean(fake_scores)


def lsgan_critic_loss(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
  """CycleGAN's discriminator loss (least squares, real → 1, fake → 0), halved as CycleGAN halves it:
  ``(E[(D(real) − 1)²] + E[D(fake)²]) / 2`` over every patch score."""
  return 0.5 * (jnp.mean(jnp.square(real_scores - 1.0)) + jnp.mean(jnp.square(fake_scores)))


def lsgan_generator_loss(fake_scores: jax.Array) -> jax.Array:
  """CycleGAN's generator loss (least squares): ``E[(D(fake) − 1)²]`` over every patch score."""
  return jnp.mean(jnp.square(fake_scores - 1.0))


def query_history_pool(images: jax.Array, count: jax.Array, fakes: jax.Array, key: jax.Array):
  """CycleGAN's image pool (Shrivastava et al.): what the discriminator sees of a batch of fakes.

  ``images [P, ...]`` holds up to P earlier fakes, ``count`` how many are filled. Each new fake, in
  batch order: while the pool is not full, it is stored and shown; once full, with probability ½ a
  random stored fake is shown and replaced by it, else it is shown itself. Returns
  ``(shown [B, ...], images, count)``; pure, so it runs inside a compiled step.
  """
  size = images.shape[0]

  def one(carry, item):
    pool, filled = carry
    fake, k = item
    k_coin, k_pick = jax.random.split(k)
    full = filled >= size
    swap = full & (jax.random.uniform(k_coin) > 0.5)
    slot = jnp.where(full, jax.random.randint(k_pick, (), 0, size), jnp.minimum(filled, size - 1))
    shown = jnp.where(swap, pool[slot], fake)
    pool = pool.at[slot].set(jnp.where(full & ~swap, pool[slot], fake))
    return (pool, jnp.minimum(filled + 1, size)), shown

  (images, count), shown = jax.lax.scan(one, (images, count), (fakes, jax.random.split(key, fakes.shape[0])))
  return shown, images, count


def gradient_penalty(
  critic_fn: Callable[[jax.Array], jax.Array],
  real: jax.Array,
  fake: jax.Array,
  key: jax.Array,
  target_norm: float = 1.0,
) -> jax.Array:
  """WGAN-GP (Gulrajani et al. 2017): ``E[(‖∇D(x̂)‖₂ - 1)²]`` at random interpolates x̂ of real and fake.

  Args:
    critic_fn: maps a batch ``[B, ...]`` to per-sample scores ``[B]``; samples must not interact
      (no batch norm), so the gradient of the summed scores gives every sample's own gradient.
    real, fake: ``[B, ...]`` of the same shape.
    key: PRNG key for the interpolation coefficients (one per sample).
    target_norm: the Lipschitz target, 1.

  Returns:
    The scalar penalty (not yet multiplied by λ_GP).
  """
  if real.shape != fake.shape:
    raise ValueError(f"real and fake must have the same shape, got {real.shape} and {fake.shape}")
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), dtype=jnp.float32)
  interpolates = eps * real.astype(jnp.float32) + (1.0 - eps) * fake.astype(jnp.float32)
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(interpolates)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1) + 1e-12)
  return jnp.mean(jnp.square(norms - target_norm))


def clip_params(clip_value: float) -> optax.GradientTransformation:
  """Original WGAN's weight clipping (Arjovsky et al. 2017) as the last link of an optax chain.

  Rewrites each update so that ``params + update`` lies in ``[-clip_value, clip_value]``.
  """

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("clip_params needs the current parameters: call update(updates, state, params)")
    clipped = jax.tree.map(lambda u, p: jnp.clip(p + u, -clip_value, clip_value) - p, updates, params)
    return clipped, state

  return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------------------------------
# Cycle consistency (eqs. 2–4).


def pixel_cycle_loss(x: jax.Array, x_reconstructed: jax.Array, valid: jax.Array | None = None) -> jax.Array:
  """Eq. 2, PCL: ``E‖x' - x‖₁`` with ``x' = G2((T_xy)⁻¹ G1(S1(x)))``, mean per pixel and channel.

  The inverse warp recovers the geometry exactly, except where S1's warp moved content out of the
  frame: ``valid`` (``[B, H, W, 1]``, 1 where the round trip stayed inside the image; our choice,
  the paper is silent) excludes those pixels, so G2 is not asked to invent what was cropped.
  The WD ablation's entangled cycle loss ``‖G2(S2(G1(S1(x)))) - x‖₁`` is this same L1 applied to
  the full-cycle reconstruction.
  """
  diff = jnp.abs(x_reconstructed.astype(jnp.float32) - x.astype(jnp.float32))
  if valid is None:
    return jnp.mean(diff)
  valid = valid.astype(jnp.float32)
  return jnp.sum(diff * valid) / (jnp.sum(valid) * diff.shape[-1] + 1e-6)


def spatial_cycle_loss(t_xy_inverse: jax.Array, t_yx: jax.Array) -> jax.Array:
  """Eq. 3, SCL: ``E‖(T_xy)⁻¹ - T_yx‖₁``, mean over the batch and the entries.

  Pass 3×3 matrices (``[B, 3, 3]``, as the paper compares transformation matrices) or, for TPS,
  control offsets. Zero exactly when S2's transformation inverts S1's.
  """
  return jnp.mean(jnp.abs(t_xy_inverse.astype(jnp.float32) - t_yx.astype(jnp.float32)))


def disentangled_cycle_loss(scl: jax.Array, pcl: jax.Array, lambda_pcl: float) -> jax.Array:
  """Eq. 4: ``L_cyc = SCL + λ_pcl · PCL``."""
  return scl + lambda_pcl * pcl


# --------------------------------------------------------------------------------------------------
# Identity preservation (eqs. 5–6).


def mask_identity_loss(translated: jax.Array, spatially_adapted: jax.Array, mask: jax.Array) -> jax.Array:
  """Eq. 5: ``E‖G1(S1(x))·M - S1(x)·M‖₁`` with M the (warped) human mask.

  Averaged over the mask's area and the channels (our choice: the paper writes an expectation of a
  norm; normalising by area keeps the weight of a small person equal to that of a large one).

  Args:
    translated: ``[B, H, W, C]`` G1(S1(x)).
    spatially_adapted: ``[B, H, W, C]`` S1(x), RGB only.
    mask: ``[B, H, W, 1]`` warped mask in [0, 1].
  """
  mask = mask.astype(jnp.float32)
  diff = jnp.abs(translated.astype(jnp.float32) - spatially_adapted.astype(jnp.float32)) * mask
  return jnp.sum(diff) / (jnp.sum(mask) * translated.shape[-1] + 1e-6)


def background_identity_loss(translated: jax.Array, spatially_adapted: jax.Array, mask: jax.Array) -> jax.Array:
  """Eq. 5's complement (not in the paper): ``E‖G1(S1(x))·(1 − M) - S1(x)·(1 − M)‖₁``.

  G1's change of the background, averaged over the background's area and the channels as
  `mask_identity_loss` averages over the person's; 0 where the mask covers the whole frame.
  """
  return mask_identity_loss(translated, spatially_adapted, 1.0 - mask.astype(jnp.float32))


def identity_mapping_loss(generated: jax.Array, target: jax.Array) -> jax.Array:
  """CycleGAN's identity mapping loss ``E‖G1(y) - y‖₁`` (the "CycleGAN*" baseline of Tables I–II)."""
  return jnp.mean(jnp.abs(generated.astype(jnp.float32) - target.astype(jnp.float32)))


def feature_identity_loss(features: jax.Array, anchor_features: jax.Array) -> jax.Array:
  """Not in the paper: ``E[1 − cos(f(G1(S1(x))), f(S1(x)))]`` in a frozen re-ID network's features f.

  0 when every translation points where its untranslated image does; at most 2. The anchor is
  taken as given: hold it fixed (``stop_gradient``) so only the translation moves towards it.

  Args:
    features: ``[B, D]`` features of the translations.
    anchor_features: ``[B, D]`` features of the images they must keep the identity of.
  """
  unit = lambda f: f / jnp.maximum(jnp.linalg.norm(f, axis=-1, keepdims=True), 1e-12)
  f, a = unit(features.astype(jnp.float32)), unit(anchor_features.astype(jnp.float32))
  return jnp.mean(1.0 - jnp.sum(f * a, axis=-1))


def contrastive_loss(embedding_a: jax.Array, embedding_b: jax.Array, positive: jax.Array, margin: float) -> jax.Array:
  """Eq. 6: ``(1 - i)·max(0, m - d)² + i·d²`` averaged over pairs, d the Euclidean distance.

  Args:
    embedding_a, embedding_b: ``[N, D]`` SiaNet embeddings of the two images of each pair.
    positive: ``[N]``, 1 for a positive pair (X & X_s, X & X_adp), 0 for a negative one
      (X & Y_s, X & Y).
    margin: m (2 in SPGAN).
  """
  diff = embedding_a.astype(jnp.float32) - embedding_b.astype(jnp.float32)
  sq_dist = jnp.sum(jnp.square(diff), axis=-1)
  dist = jnp.sqrt(sq_dist + 1e-12)  # the epsilon keeps the gradient finite for identical pairs
  positive = positive.astype(jnp.float32)
  return jnp.mean(positive * sq_dist + (1.0 - positive) * jnp.square(jnp.maximum(margin - dist, 0.0)))


def mode_seeking_loss(output_distance: jax.Array, code_distance: jax.Array, eps: float) -> jax.Array:
  """Mode seeking (Mao et al., MSGAN, 2019): ``mean(d_z / (d_out + ε))``, minimised.

  Not in SA-GAN's paper: it asks two spatial codes of one image to give warps (``d_out``, per image)
  that differ in proportion to how far apart the codes are (``d_z``), which z as mere input
  channels does not. ``ε`` bounds the loss where the warps coincide.
  """
  return jnp.mean(code_distance / (output_distance + eps))


# --------------------------------------------------------------------------------------------------
# The objective (eq. 7).


def generator_objective(
  adversarial: jax.Array,
  cycle: jax.Array,
  identity: jax.Array,
  siamese: jax.Array,
  lambda_cyc: float,
  lambda_idt: float,
  lambda_siam: float,
) -> jax.Array:
  """Eq. 7: ``L_{G,S} = L_adv + λ_cyc·L_cyc + λ_idt·L_idt + λ_siam·L_siam`` for one direction."""
  return adversarial + lambda_cyc * cycle + lambda_idt * identity + lambda_siam * siamese
