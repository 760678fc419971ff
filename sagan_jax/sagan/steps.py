"""The training state and the jit-compiled, sharded SA-GAN updates.

`make_steps` compiles ``critic_step`` (D1, D2, DT1, DT2) and ``generator_step`` (G1, G2, S1, S2,
then SiaNet) over a ``("data",)`` mesh: the batch is sharded, the state replicated and donated.
The optimisers come from the caller (`Optimizers`; `sagan_jax.sagan.train.optimizers` builds the
configured ones with their schedule).
A training loop runs ``n_critic`` critic steps per generator step. The critics have no batch
norm, so sharding the batch changes no result (only the order of float reductions).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from sagan_jax import losses, parallel
from sagan_jax.sagan.model import SAGAN, XY

POOL_KEY = "history_pool"
EMA_KEY = "generator_ema"
Batch = dict[str, jax.Array]  # x [B,H,W,3], x_mask [B,H,W,1], y, y_mask: images in [-1, 1], masks in [0, 1]
# (variables, RGB [B, H, W, 3] in [-1, 1]) → features [B, D]: a frozen network, hashable (compiled steps key on it).
FeatureFn = Callable[[Any, jax.Array], jax.Array]


class Optimizers(NamedTuple):
  """One optimiser per group of networks; hashable, so compiled steps are shared by equal ones."""

  generator: optax.GradientTransformation  # G1, G2, S1, S2
  critic: optax.GradientTransformation  # D1, D2, DT1, DT2
  sianet: optax.GradientTransformation


@flax.struct.dataclass
class SAGANState:
  """Everything a resumed run needs: a pytree Orbax can save."""

  step: jax.Array  # generator updates done (int32 scalar)
  critic_steps: jax.Array  # critic updates done
  rng: jax.Array  # uint32[2] PRNG key, split at every update
  params: dict[str, Any]  # network name → parameters
  # "generator" / "critic" / "sianet" → optax state; with a history pool (CycleGAN) also "history_pool":
  # per discriminator ("D1"/"D2") its stored fakes and fill count, absent otherwise so that
  # checkpoints of configurations without one keep their layout. With ``generator_ema`` also
  # "generator_ema": the moving average of G1, G2, S1, S2 (absent otherwise, for the same reason).
  opt_state: dict[str, Any]

  @property
  def pools(self) -> dict[str, Any]:
    return self.opt_state.get(POOL_KEY, {})

  @property
  def translation_params(self) -> dict[str, Any]:
    """The parameters that translate: the generators' moving average when there is one."""
    return {**self.params, **self.opt_state.get(EMA_KEY, {})}


def _group(params, names):
  return {name: params[name] for name in names}


def create_state(model: SAGAN, tx: Optimizers, seed: int | jax.Array, mesh: Mesh | None = None) -> SAGANState:
  """Fresh parameters and optimiser states; replicated over ``mesh`` when one is given.

  Pass the mesh the steps run on: a state that is not yet on it makes the first step compile for
  single-device inputs and the second compile again for the mesh-replicated state it returned.
  """
  key = jax.random.PRNGKey(seed) if isinstance(seed, int) else seed
  init_key, rng = jax.random.split(key)
  params = model.init_params(init_key)
  opt_state = {
    "generator": tx.generator.init(_group(params, model.generator_names)),
    "critic": tx.critic.init(_group(params, model.critic_names)),
    "sianet": tx.sianet.init(_group(params, model.sianet_names)),
  }
  if model.config.history_pool:
    h, w = model.config.image_size
    empty = lambda: {
      "images": jnp.zeros((model.config.history_pool, h, w, 4), jnp.float32),
      "count": jnp.zeros((), jnp.int32),
    }
    opt_state[POOL_KEY] = {"D1": empty(), "D2": empty()}
  if model.config.generator_ema:
    # Its own buffers: the compiled steps donate the state, and one buffer cannot be donated twice.
    opt_state[EMA_KEY] = jax.tree.map(jnp.copy, _group(params, model.generator_names))
  state = SAGANState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), rng, params, opt_state)
  return state if mesh is None else jax.device_put(state, parallel.replicated(mesh))


def critic_update(model: SAGAN, tx: Optimizers, state: SAGANState, batch: Batch) -> tuple[SAGANState, dict]:
  """One update of the critics (eq. 1, critic side). Pure; `make_steps` compiles it."""
  rng, key = jax.random.split(state.rng)
  critic_params = _group(state.params, model.critic_names)
  fakes, pools = None, state.pools
  if pools:  # CycleGAN: D sees fakes drawn through its history pool
    fakes = model.fake_images(state.params, batch, key)
    pools = {}
    for name, side, k in (("D1", "y", 0), ("D2", "x", 1)):
      a = fakes[side]
      shown, images, count = losses.query_history_pool(
        state.pools[name]["images"],
        state.pools[name]["count"],
        jnp.concatenate([a.adapted, a.mask], -1),
        jax.random.fold_in(key, 100 + k),
      )
      fakes[side] = a._replace(adapted=shown[..., :3], mask=shown[..., 3:])
      pools[name] = {"images": images, "count": count}
  grads, metrics = jax.grad(model.critic_loss, has_aux=True)(critic_params, state.params, batch, key, fakes)
  updates, opt_state = tx.critic.update(grads, state.opt_state["critic"], critic_params)
  new_params = {**state.params, **optax.apply_updates(critic_params, updates)}
  return state.replace(
    critic_steps=state.critic_steps + 1,
    rng=rng,
    params=new_params,
    opt_state={**state.opt_state, "critic": opt_state, **({POOL_KEY: pools} if pools else {})},
  ), metrics


def generator_update(
  model: SAGAN,
  tx: Optimizers,
  state: SAGANState,
  batch: Batch,
  features: FeatureFn | None = None,
  feature_variables: Any = None,
) -> tuple[SAGANState, dict]:
  """One update of G1, G2, S1, S2 (eq. 7, both directions), then of SiaNet (eq. 6).

  ``features(feature_variables, images)``: the frozen re-ID network of ``lambda_reid`` (None without).
  """
  rng, key = jax.random.split(state.rng)
  gen_params = _group(state.params, model.generator_names)
  identity_features = None if features is None else functools.partial(features, feature_variables)
  loss = functools.partial(model.generator_loss, identity_features=identity_features)
  grads, (metrics, siamese_images) = jax.grad(loss, has_aux=True)(gen_params, state.params, batch, key)
  updates, gen_opt = tx.generator.update(grads, state.opt_state["generator"], gen_params)
  params = {**state.params, **optax.apply_updates(gen_params, updates)}
  opt_state = {**state.opt_state, "generator": gen_opt}
  if EMA_KEY in opt_state:
    decay = model.config.generator_ema
    opt_state[EMA_KEY] = jax.tree.map(
      lambda average, new: decay * average + (1.0 - decay) * new,
      opt_state[EMA_KEY],
      _group(params, model.generator_names),
    )
  if model.sianet_names:
    sia_params = _group(params, model.sianet_names)
    sia_grads, sia_metrics = jax.grad(model.sianet_loss, has_aux=True)(sia_params, siamese_images)
    sia_updates, sia_opt = tx.sianet.update(sia_grads, state.opt_state["sianet"], sia_params)
    params = {**params, **optax.apply_updates(sia_params, sia_updates)}
    opt_state = {**opt_state, "sianet": sia_opt}
    metrics = {**metrics, **sia_metrics}
  return state.replace(step=state.step + 1, rng=rng, params=params, opt_state=opt_state), metrics


@functools.lru_cache(maxsize=8)
def make_steps(
  model: SAGAN, tx: Optimizers, mesh: Mesh, features: FeatureFn | None = None
) -> tuple[Callable, Callable]:
  """``(critic_step, generator_step)``, each ``(state, batch) → (state, metrics)``, jit-compiled.

  The state is replicated over the mesh and donated (its buffers are reused for the new state);
  the batch is sharded along its leading axis. Each compiles once per batch shape; equal models
  and optimisers on one mesh share the compiled steps (a resumed stage in the same process does not
  recompile). With ``features`` (`lambda_reid`'s network), the generator step is
  ``(state, batch, feature_variables)``, the variables replicated.
  """
  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  compile_step = lambda fn, shardings=(rep, data): jax.jit(
    functools.partial(fn, model, tx), in_shardings=shardings, out_shardings=(rep, rep), donate_argnums=0
  )
  if features is None:
    return compile_step(critic_update), compile_step(generator_update)
  with_features = lambda model, tx, state, batch, variables: generator_update(
    model, tx, state, batch, features, variables
  )
  return compile_step(critic_update), compile_step(with_features, (rep, data, rep))


REGIONS = ("frame", "person", "background")  # where a translation keeps G1's pixels


def keep_region(a, region: str, strength: float = 1.0) -> jax.Array:
  """The translation of ``a`` (`SAGAN.adapt`'s output) with G1's pixels kept in ``region`` only and
  the spatially adapted source S1(x) elsewhere; ``"frame"`` is G1's whole output.

  ``strength`` s < 1 keeps that share of G1's change where its pixels are kept,
  ``(1 − s)·S1(x) + s·G1(S1(x))``: the same warp, a weaker recolouring (0 is S1(x) alone)."""
  if region not in REGIONS:
    raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
  if not 0.0 <= strength <= 1.0:
    raise ValueError(f"strength must lie in [0, 1], got {strength!r}")
  adapted = a.adapted if strength == 1.0 else (1 - strength) * a.spatial + strength * a.adapted
  if region == "frame":
    return adapted
  keep = a.mask if region == "person" else 1 - a.mask
  return keep * adapted + (1 - keep) * a.spatial


@functools.partial(jax.jit, static_argnames=("model", "num_codes", "region", "strength"))
def translate(
  model: SAGAN,
  params: dict,
  images: jax.Array,
  masks: jax.Array,
  num_codes: int,
  key: jax.Array,
  region: str = "frame",
  strength: float = 1.0,
):
  """Multi-modal X→Y translation: ``num_codes`` (M) spatial codes per source image.

  Args:
    model: the SA-GAN configuration.
    params: its parameters (``state.params``).
    images: ``[B, H, W, 3]`` source images in [-1, 1]; may be sharded along B.
    masks: ``[B, H, W, 1]`` their human masks.
    num_codes: M.
    key: PRNG key for the spatial codes.
    region: where G1's pixels are kept: ``"frame"``, everywhere (the paper); ``"person"``, inside
      the warped mask only, or ``"background"``, outside it, the spatially adapted source S1(x)
      elsewhere (our option, for finding where a translation helps or hurts).
    strength: the share of G1's change kept there (`keep_region`); 1 is the paper's translation.

  Returns:
    ``(adapted [B, M, H, W, 3], masks [B, M, H, W, 1], transforms [B, M, P])``; transforms are
    zeros when the configuration has no spatial transformer.
  """
  if region not in REGIONS:
    raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
  masks = model.masks_for_input(masks)
  codes = jax.vmap(lambda k: model.spatial_codes(k, images.shape[0]))(jax.random.split(key, num_codes))

  def one_code(z):
    a = model.adapt(params, XY, images, masks, z)
    p = a.transform if a.transform is not None else jnp.zeros((images.shape[0], model.num_transform_params))
    return keep_region(a, region, strength), a.mask, p

  adapted, warped_masks, transforms = jax.vmap(one_code)(codes)
  to_batch_major = lambda t: jnp.swapaxes(t, 0, 1)
  return to_batch_major(adapted), to_batch_major(warped_masks), to_batch_major(transforms)
