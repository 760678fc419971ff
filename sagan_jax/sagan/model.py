"""SA-GAN assembled: which networks exist for a configuration, their forward paths (Fig. 2–3) and
the critic, generator and SiaNet objectives built from `sagan_jax.losses`.

Names follow the paper: S1/G1 map X→Y, S2/G2 map Y→X, D1 judges domain Y (X_adp against Y), D2
judges domain X, DT1 is the spatial critic D_T of eq. 1 (T_xy against (T_yx)⁻¹) and DT2 its mirror
for the Y→X direction (the paper writes the X→Y equations and says the Y→X ones are "similar";
a critic per direction, as D1/D2, is our reading; ``spatial_critics="source"`` keeps eq. 1's one).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from sagan_jax import losses, runtime
from sagan_jax.errors import ConfigError
from sagan_jax.models import (
  PatchCritic,
  ResnetGenerator,
  SiaNet,
  SpatialCritic,
  SpatialTransformer,
)
from sagan_jax.models import stm as stm_lib
from sagan_jax.models.generator import PATHS as GENERATOR_PATHS
from sagan_jax.models.layers import Layers
from sagan_jax.sagan import augment as augment_lib

Params = dict[str, Any]
GAN_LOSSES = ("wgan", "lsgan")
CRITIC_MASKS = ("soft", "straight_through", "binary", "none")
CRITIC_REGIONS = ("frame", "person", "background")
CODE_DISTRIBUTIONS = ("normal", "categorical")  # how spatial codes are drawn (`SAGAN.spatial_codes`)
CYCLE_CODES = ("shared", "independent")  # the back STM's code in the cycle (`SAGAN._cycle_loss`)
STM_HEADS_S2 = ("same", "pool", "flatten")  # S2's localisation head; "same": config.sagan.stm_head's
SCL_CYCLES = ("both", "source")  # whose cycles' SCL trains (`SAGAN.generator_loss`)
SPATIAL_CRITICS = ("both", "source")  # D_T per direction (DT1, DT2), or the paper's one (DT1)
CYCLE_CODE_STREAM = 0xC7C  # folded into a step's key for the back STM's own codes, apart from every other split
LIPSCHITZ = ("gradient_penalty", "weight_clipping", "none")
AUGMENT_STREAM = 0x5A6  # folded into a step's key for `critic_augment`'s draws, apart from every other split
MODE_SEEKING_STREAM = 0x3D5  # + direction index: each direction's second codes for mode seeking, a draw of its own


@dataclasses.dataclass(frozen=True)
class Direction:
  """The networks of one direction of the cycle."""

  stm: str  # spatial transformer of this direction
  generator: str
  critic: str  # judges the domain this direction maps into
  spatial_critic: str
  back_stm: str  # the other direction's networks, which close the cycle
  back_generator: str


XY = Direction("S1", "G1", "D1", "DT1", "S2", "G2")
YX = Direction("S2", "G2", "D2", "DT2", "S1", "G1")


class Adapted(NamedTuple):
  """One direction's forward pass on a batch (Fig. 2)."""

  transform: jax.Array | None  # [B, P] predicted parameters (T_xy for X→Y); None without STMs
  spatial: jax.Array  # [B, H, W, 3] X_s: spatially adapted RGB
  mask: jax.Array  # [B, H, W, 1] the mask, warped with the image
  inside: jax.Array  # [B, H, W, 1] 1 where the warp read inside the source frame (0 outside)
  adapted: jax.Array  # [B, H, W, 3] X_adp: spatially then pixel-adapted RGB


def _check_image_size(c) -> None:
  """Refuses an image size one of the configuration's networks cannot take, naming the fields to change."""
  if len(c.image_size) != 2 or min(c.image_size) < 1:
    raise ConfigError(f"config.sagan.image_size={tuple(c.image_size)}: expected (height, width), both positive")
  for side, n in zip(("height", "width"), c.image_size):
    where = f"config.sagan.image_size={tuple(c.image_size)}"
    if c.pixel and n % 4:
      raise ConfigError(f"{where}: the generators downsample twice, so the {side} must be a multiple of 4")
    # PatchGAN: a 4×4 stride-2 convolution halves (floor), then critic_layers − 1 more, then two 4×4 stride-1 ones.
    patches = n // 2**c.critic_layers - 2
    if patches < 1:
      raise ConfigError(
        f"{where}: the critics (critic_layers={c.critic_layers}) leave no {side} for a patch score; "
        f"use a {side} of at least {3 * 2**c.critic_layers} or fewer critic_layers"
      )
    if c.siamese and c.lambda_siam > 0:
      for _ in c.sianet_widths:  # a 4×4 stride-2 convolution (floor), then a 2×2 max pool (ceil)
        n = -(-(n // 2) // 2) if n >= 2 else 0
      if n < 1:
        raise ConfigError(
          f"{where}: SiaNet's {len(c.sianet_widths)} stages (sianet_widths) reduce the {side} to nothing; "
          "use a larger image or fewer sianet_widths"
        )


@functools.lru_cache(maxsize=64)
def _jitted_init(module):
  return runtime.jit_init(module.init)


class SAGAN:
  """The networks and objectives of one SA-GAN configuration (a `sagan_config`).

  Holds no parameters: every method takes parameter dicts keyed by network name ("G1", "S1",
  "D1", "DT1", "SiaNet", ...). Only the networks the configuration uses exist: an SA-GAN (WS)
  model has no S1/S2 or DT1/DT2, an SA-GAN (WP) model no G1/G2.
  """

  def __init__(self, config: ml_collections.ConfigDict, layers: Layers = Layers()):
    """``layers``: what the networks' convolutions and pools are built from (flax's by default;
    `sagan_jax.cpu.layers` on a CPU host); the parameters are the same."""
    self.config = ml_collections.FrozenConfigDict(config)
    self.layers = layers
    c = self.config
    if c.gan_loss not in GAN_LOSSES:
      raise ConfigError(f"sagan.gan_loss must be one of {GAN_LOSSES}, got {c.gan_loss!r}")
    if c.lipschitz not in LIPSCHITZ:
      raise ConfigError(f"sagan.lipschitz must be one of {LIPSCHITZ}, got {c.lipschitz!r}")
    if c.lambda_siam < 0:
      raise ConfigError(f"config.sagan.lambda_siam={c.lambda_siam}: expected a weight ≥ 0 (0 turns eq. 6 off)")
    if c.history_pool < 0:
      raise ConfigError(f"sagan.history_pool must be ≥ 0, got {c.history_pool}")
    if c.identity_loss not in ("mask", "mapping", "none"):
      raise ConfigError(f"sagan.identity_loss must be 'mask', 'mapping' or 'none', got {c.identity_loss!r}")
    if c.critic_mask not in CRITIC_MASKS:
      raise ConfigError(f"sagan.critic_mask must be one of {CRITIC_MASKS}, got {c.critic_mask!r}")
    if c.critic_region not in CRITIC_REGIONS:
      raise ConfigError(f"sagan.critic_region must be one of {CRITIC_REGIONS}, got {c.critic_region!r}")
    try:
      self.critic_augment = augment_lib.parse_policy(c.critic_augment)
    except ValueError as e:
      raise ConfigError(f"config.sagan.critic_augment={c.critic_augment!r}: {e}") from None
    if c.lambda_mode_seeking < 0 or c.mode_seeking_eps <= 0:
      raise ConfigError(
        f"config.sagan.lambda_mode_seeking={c.lambda_mode_seeking} and mode_seeking_eps={c.mode_seeking_eps}: "
        "expected λ ≥ 0 and ε > 0"
      )
    if c.lambda_reid < 0:
      raise ConfigError(f"config.sagan.lambda_reid={c.lambda_reid}: expected a weight ≥ 0 (0 turns it off)")
    if c.lambda_background_idt < 0:
      raise ConfigError(
        f"config.sagan.lambda_background_idt={c.lambda_background_idt}: expected a weight ≥ 0 (0 turns it off)"
      )
    if c.lambda_background_idt and not c.use_mask:
      raise ConfigError(
        f"config.sagan.lambda_background_idt={c.lambda_background_idt} needs the mask to tell the background "
        "by: set config.sagan.use_mask=True or lambda_background_idt=0"
      )
    if not (c.spatial or c.pixel):
      raise ConfigError("sagan.spatial and sagan.pixel are both off: nothing would adapt the images")
    if c.spatial and (not isinstance(c.z_dim, int) or c.z_dim < 1):
      raise ConfigError(
        f"config.sagan.z_dim={c.z_dim!r}: the spatial code needs at least 1 dimension (with none, every one "
        "of the M codes would give the same warp)"
      )
    if c.code_distribution not in CODE_DISTRIBUTIONS:
      raise ConfigError(f"config.sagan.code_distribution={c.code_distribution!r}: expected one of {CODE_DISTRIBUTIONS}")
    if c.cycle_code not in CYCLE_CODES:
      raise ConfigError(f"config.sagan.cycle_code={c.cycle_code!r}: expected one of {CYCLE_CODES}")
    if c.stm_head_s2 not in STM_HEADS_S2:
      raise ConfigError(f"config.sagan.stm_head_s2={c.stm_head_s2!r}: expected one of {STM_HEADS_S2}")
    if c.scl_cycles not in SCL_CYCLES:
      raise ConfigError(f"config.sagan.scl_cycles={c.scl_cycles!r}: expected one of {SCL_CYCLES}")
    if c.spatial_critics not in SPATIAL_CRITICS:
      raise ConfigError(f"config.sagan.spatial_critics={c.spatial_critics!r}: expected one of {SPATIAL_CRITICS}")
    if c.camera_critics and not (c.spatial and c.code_distribution == "categorical"):
      raise ConfigError(
        "config.sagan.camera_critics=True names a target camera with each of S1's one-hot codes: it needs "
        "spatial=True and --config.sagan.code_distribution=categorical (z_dim = the target's cameras)"
      )
    if c.camera_critics and c.history_pool:
      raise ConfigError(
        f"config.sagan.camera_critics=True with history_pool={c.history_pool}: pooled fakes would reach D1 "
        "apart from the cameras their codes name; set --config.sagan.history_pool=0"
      )
    _check_image_size(c)
    if not 0.0 <= c.generator_ema < 1.0:
      raise ConfigError(f"config.sagan.generator_ema={c.generator_ema}: expected a decay in [0, 1) (0 turns it off)")
    for region in ("person", "background"):
      field = f"generator_{region}_path"
      path = c[field]
      if path not in GENERATOR_PATHS:
        raise ConfigError(f"config.sagan.{field}={path!r}: expected one of {GENERATOR_PATHS}")
      if path == "pointwise" and not (c.generator_residual and c.generator_pointwise_features > 0 and c.use_mask):
        raise ConfigError(
          f"config.sagan.{field}='pointwise' limits G on the {region} to the per-pixel colour path: it "
          "needs --config.sagan.generator_residual=True, --config.sagan.generator_pointwise_features > 0 and "
          "use_mask (a mask-free variant sees no person); or set it to 'full'"
        )
      if path == "colour_map" and not (c.generator_residual and c.use_mask):
        raise ConfigError(
          f"config.sagan.{field}='colour_map' recolours the {region} by one affine map per image: it needs "
          "--config.sagan.generator_residual=True and use_mask (a mask-free variant sees no person); or set "
          "it to 'full'"
        )
    dtype = jnp.dtype(c.dtype)
    self.transform = c.transform
    self.tps_control_hw = tuple(c.tps_control_hw)
    self.num_transform_params = stm_lib.num_params(c.transform, self.tps_control_hw)
    self.generator = ResnetGenerator(
      c.generator_features,
      c.generator_blocks,
      residual=c.generator_residual,
      pointwise_features=c.generator_pointwise_features,
      upsample=c.generator_upsample,
      person_path=c.generator_person_path,
      background_path=c.generator_background_path,
      dtype=dtype,
      conv=layers.conv,
      conv_transpose=layers.conv_transpose,
    )
    self.critic = PatchCritic(c.critic_features, c.critic_layers, c.critic_norm, dtype=dtype, conv=layers.conv)
    # With camera_critics D1 and DT1, which judge X→Y, score each image as its code's target camera.
    self.num_cameras = c.z_dim if c.camera_critics else 1
    critic_xy = self.critic.clone(outputs=self.num_cameras) if c.camera_critics else self.critic
    self.critics = {"D1": critic_xy, "D2": self.critic}
    stm = functools.partial(
      SpatialTransformer,
      c.transform,
      c.stm_features,
      c.stm_layers,
      c.stm_hidden,
      self.tps_control_hw,
      dtype=dtype,
      conv=layers.conv,
    )
    self.stm = stm(head=c.stm_head)  # S1's; S2's too unless stm_head_s2 names another head
    self.stms = {"S1": self.stm, "S2": self.stm if c.stm_head_s2 == "same" else stm(head=c.stm_head_s2)}
    self.spatial_critic = SpatialCritic(c.spatial_critic_hidden, c.spatial_critic_layers, dtype=dtype)
    spatial_xy = self.spatial_critic.clone(outputs=self.num_cameras) if c.camera_critics else self.spatial_critic
    self.spatial_critics = {"DT1": spatial_xy, "DT2": self.spatial_critic}
    self.sianet = SiaNet(
      tuple(c.sianet_widths), c.sianet_embed_dim, dtype=dtype, conv=layers.conv, max_pool=layers.max_pool
    )

  # Two models of equal configs are interchangeable: compiled steps (`make_steps`, `translate`,
  # which take the model as a static argument) are reused across instances.
  def __eq__(self, other) -> bool:
    return isinstance(other, SAGAN) and self.config == other.config and self.layers == other.layers

  def __hash__(self) -> int:
    return hash((self.config, self.layers))

  # ------------------------------------------------------------------------------------------------
  # Which networks exist, and their parameters.

  @property
  def generator_names(self) -> tuple[str, ...]:
    """Networks trained by the generator objective (eq. 7): G1, G2 and/or S1, S2."""
    return (("G1", "G2") if self.config.pixel else ()) + (("S1", "S2") if self.config.spatial else ())

  @property
  def critic_names(self) -> tuple[str, ...]:
    if not (self.config.spatial and self.config.spatial_critic):
      return ("D1", "D2")
    return ("D1", "D2", "DT1") + (("DT2",) if self.config.spatial_critics == "both" else ())

  @property
  def uses_reid(self) -> bool:
    """Whether the generator objective has ``lambda_reid``'s term: it judges G1's change, so WP has none."""
    return bool(self.config.lambda_reid) and self.config.pixel

  @property
  def uses_siamese(self) -> bool:
    """Whether eq. 6 is on: SiaNet exists and trains only with ``siamese`` and ``lambda_siam`` > 0."""
    return bool(self.config.siamese) and self.config.lambda_siam > 0

  @property
  def sianet_names(self) -> tuple[str, ...]:
    return ("SiaNet",) if self.uses_siamese else ()

  def init_params(self, key: jax.Array) -> Params:
    """Fresh parameters of every network this configuration uses.

    Each module's init is compiled once and reused (G1 and G2 share one compilation), without
    XLA:CPU's backend optimisations (`runtime.jit_init`): faster than eager initialisation, and
    than compiling all networks as one program.
    """
    h, w = self.config.image_size
    image4 = jnp.zeros((1, h, w, 4), jnp.float32)
    z = jnp.zeros((1, self.config.z_dim), jnp.float32)
    transform = jnp.zeros((1, self.num_transform_params), jnp.float32)
    inits = {
        "G1": (self.generator, image4), "G2": (self.generator, image4),
        "S1": (self.stms["S1"], image4, z), "S2": (self.stms["S2"], image4, z),
        "D1": (self.critics["D1"], image4), "D2": (self.critics["D2"], image4),
        "DT1": (self.spatial_critics["DT1"], transform), "DT2": (self.spatial_critics["DT2"], transform),
        "SiaNet": (self.sianet, image4[..., :3]),
    }  # fmt: skip
    names = self.generator_names + self.critic_names + self.sianet_names
    keys = jax.random.split(key, len(names))
    params = {}
    for name, k in zip(names, keys):
      module, *args = inits[name]
      params[name] = _jitted_init(module)(k, *args)["params"]
    return params

  # ------------------------------------------------------------------------------------------------
  # Forward paths.

  def spatial_codes(self, key: jax.Array, batch: int) -> jax.Array:
    """Spatial codes ``[B, z_dim]``: z ~ N(0, I) (Section III-B), or with ``code_distribution="categorical"``
    one of the z_dim one-hot codes uniformly, times √z_dim (E‖z‖² = z_dim either way)."""
    z_dim = self.config.z_dim
    if self.config.code_distribution == "categorical":
      index = jax.random.randint(key, (batch,), 0, z_dim)
      return jax.nn.one_hot(index, z_dim, dtype=jnp.float32) * jnp.sqrt(jnp.float32(z_dim))
    return jax.random.normal(key, (batch, z_dim), jnp.float32)

  def fixed_codes(self, key: jax.Array, num_codes: int) -> jax.Array:
    """``[num_codes, z_dim]`` codes that each name one warp policy, for fidelity, the sample grids and
    the benches: `spatial_codes` drawn once from ``key``, or with categorical codes code k is category
    k mod z_dim (``key`` unused), so any num_codes ≥ z_dim holds every category; ten uniform draws of
    four categories miss one with probability 0.22, and the coverage score then measures the draw."""
    z_dim = self.config.z_dim
    if self.config.code_distribution == "categorical":
      index = jnp.arange(num_codes) % z_dim
      return jax.nn.one_hot(index, z_dim, dtype=jnp.float32) * jnp.sqrt(jnp.float32(z_dim))
    return self.spatial_codes(key, num_codes)

  def masks_for_input(self, masks: jax.Array) -> jax.Array:
    """The masks the networks see: all ones when the configuration runs mask-free (plain CycleGAN)."""
    return masks if self.config.use_mask else jnp.ones_like(masks)

  def adapt(
    self,
    params: Params,
    d: Direction,
    images: jax.Array,
    masks: jax.Array,
    z: jax.Array,
    transform: jax.Array | None = None,
  ) -> Adapted:
    """Spatial then pixel adaptation of ``images[B, H, W, 3]`` with masks ``[B, H, W, 1]``.

    ``transform`` replaces the STM's prediction (the parameters of T) when given.
    """
    if self.config.spatial:
      p = (
        transform
        if transform is not None
        else self.stms[d.stm].apply({"params": params[d.stm]}, jnp.concatenate([images, masks], -1), z)
      )
      warped = self.apply_transform(jnp.concatenate([images, masks], -1), p)
      spatial, warped_mask, inside = warped[..., :3], warped[..., 3:4], self.inside(masks, p)
    else:
      p, spatial, warped_mask, inside = None, images, masks, jnp.ones_like(masks)
    adapted = self.pixel_adapt(params, d.generator, spatial, warped_mask)
    return Adapted(p, spatial, warped_mask, inside, adapted)

  def pixel_adapt(self, params: Params, generator: str, images: jax.Array, masks: jax.Array) -> jax.Array:
    if not self.config.pixel:
      return images
    return self.generator.apply({"params": params[generator]}, jnp.concatenate([images, masks], -1))

  def apply_transform(self, images: jax.Array, p: jax.Array) -> jax.Array:
    return stm_lib.apply_transform(images, p, self.transform, self.tps_control_hw, padding=self.config.warp_padding)

  def inside(self, like: jax.Array, p: jax.Array, previous: jax.Array | None = None) -> jax.Array:
    """``[B, H, W, 1]`` share of each output pixel read from inside the source frame.

    With ``previous`` (an earlier warp's `inside`), the share that stayed inside both warps.
    """
    ones = jnp.ones_like(like[..., :1]) if previous is None else previous
    return stm_lib.apply_transform(ones, p, self.transform, self.tps_control_hw, padding="zeros")

  def _comparable_transform(self, p: jax.Array) -> jax.Array:
    """What SCL compares: 3×3 matrices (homography, affine), or TPS control offsets."""
    return p if self.transform == "tps" else stm_lib.transform_matrices(p, self.transform)

  def _per_camera(self, name: str, scores: jax.Array, cameras: jax.Array | None) -> jax.Array:
    """``scores[..., K]`` of a camera-conditioned critic → each image's own camera's (``cameras[B]``)."""
    if self.num_cameras == 1 or name not in ("D1", "DT1"):
      return scores
    if cameras is None:
      raise ValueError(f"{name} scores each image as a target camera (camera_critics): pass cameras [B]")
    index = jnp.asarray(cameras, jnp.int32).reshape((-1,) + (1,) * (scores.ndim - 1))
    return jnp.take_along_axis(scores, index, axis=-1)[..., 0]

  def _critic_patches(
    self, params: Params, name: str, inputs: jax.Array, key: jax.Array | None = None, cameras: jax.Array | None = None
  ) -> jax.Array:
    """Patch scores ``[B, h, w]`` of RGB + mask ``inputs``; ``key`` draws `critic_augment`'s transformations;
    ``cameras[B]``: the target camera D1 judges each image as (camera_critics)."""
    patches = self.critics[name].apply({"params": params[name]}, self._critic_input(inputs, key))
    return self._per_camera(name, patches, cameras)

  def _critic_scores(
    self, params: Params, name: str, inputs: jax.Array, key: jax.Array | None = None, cameras: jax.Array | None = None
  ) -> jax.Array:
    """Per-image critic values ``[B]``: the mean of the patch scores of RGB + mask ``inputs``."""
    return jnp.mean(self._critic_patches(params, name, inputs, key, cameras), axis=(1, 2))

  def _spatial_scores(self, params: Params, name: str, transform: jax.Array, cameras: jax.Array | None = None):
    """``[B]``: DT1's or DT2's score of transformation parameters ``[B, P]``."""
    return self._per_camera(name, self.spatial_critics[name].apply({"params": params[name]}, transform), cameras)

  def judge(
    self, params: Params, critic: str, images: jax.Array, masks: jax.Array, cameras: jax.Array | None = None
  ) -> jax.Array:
    """``[B]``: what critic ``critic`` ("D1", "D2") makes of RGB ``images`` and their ``masks``, as its
    update sees a batch (the configured mask and region handling; no augmentation); ``cameras``: the
    target camera index of each image, for a camera-conditioned D1."""
    return self._critic_scores(params, critic, jnp.concatenate([images, masks], -1), cameras=cameras)

  def source_codes(self, key: jax.Array, batch: dict) -> jax.Array:
    """S1's codes for a batch's source images: `spatial_codes`, or with ``camera_critics`` the one-hot
    code of the target camera each pairs with (``batch["y_camera"]``), so D1 and DT1 judge the
    translation against that camera's images."""
    n = batch["x"].shape[0]
    if not self.config.camera_critics:
      return self.spatial_codes(key, n)
    if "y_camera" not in batch:
      raise ValueError("camera_critics needs batch['y_camera']: each target image's camera index")
    cameras = jnp.asarray(batch["y_camera"], jnp.int32)
    return jax.nn.one_hot(cameras, self.num_cameras, dtype=jnp.float32) * jnp.sqrt(jnp.float32(self.num_cameras))

  def _augment_keys(self, key: jax.Array, purpose: int, n: int) -> list:
    """``n`` keys for `critic_augment` (Nones when it is off: the other random streams are untouched)."""
    if not self.critic_augment:
      return [None] * n
    return list(jax.random.split(jax.random.fold_in(key, AUGMENT_STREAM + purpose), n))

  def _adversarial(
    self, params: Params, d: Direction, a: Adapted, key: jax.Array | None = None, cameras: jax.Array | None = None
  ) -> jax.Array:
    """The generator side of D's game (eq. 1, or CycleGAN's least squares), plus D_T's when it exists."""
    fake = jnp.concatenate([a.adapted, a.mask], -1)
    if self.config.gan_loss == "lsgan":
      out = losses.lsgan_generator_loss(self._critic_patches(params, d.critic, fake, key, cameras))
    else:
      out = losses.wgan_generator_loss(self._critic_scores(params, d.critic, fake, key, cameras))
    if d.spatial_critic in self.critic_names:
      scores = self._spatial_scores(params, d.spatial_critic, a.transform, cameras)
      out = out + (
        losses.lsgan_generator_loss(scores) if self.config.gan_loss == "lsgan" else losses.wgan_generator_loss(scores)
      )
    return out

  def _critic_input(self, inputs: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """What D1/D2 see of RGB + mask: the mask as given ("soft"); rounded with the gradient passed
    straight through ("straight_through": real and warped fake masks both binary, so a warp's soft
    edges cannot tell them apart, while S1 still learns geometry from D1); rounded without gradient
    ("binary"); or zeroed ("none"). With ``critic_region="person"`` the RGB outside that mask (the
    given one, for "none") is set to 0; with ``"background"`` the RGB inside it. Then, with a
    ``key`` and a `critic_augment` policy, RGB and mask moved and cut out together."""
    if key is not None and self.critic_augment:
      return augment_lib.augment(key, self._critic_input(inputs), self.critic_augment)
    mode = self.config.critic_mask
    if mode == "soft" and self.config.critic_region == "frame":
      return inputs
    rgb, mask = inputs[..., :3], inputs[..., 3:]
    if mode == "straight_through":
      mask = mask + jax.lax.stop_gradient(jnp.round(mask) - mask)
    elif mode == "binary":
      mask = jax.lax.stop_gradient(jnp.round(mask))
    if self.config.critic_region == "person":
      rgb = rgb * mask
    elif self.config.critic_region == "background":
      rgb = rgb * (1.0 - mask)
    if mode == "none":
      mask = jnp.zeros_like(mask)
    return jnp.concatenate([rgb, mask], -1)

  # ------------------------------------------------------------------------------------------------
  # Objectives.

  def fake_images(self, frozen_params: Params, batch: dict, key: jax.Array) -> dict[str, Adapted]:
    """The generators' outputs the critics judge, without gradient: ``{"y": G1(S1(x)), "x": G2(S2(y))}``.

    Uses the first two of ``key``'s three splits; `critic_loss` keeps the third for the penalty.
    """
    k_x, k_y, _ = jax.random.split(key, 3)
    x, y = batch["x"], batch["y"]
    mx, my = self.masks_for_input(batch["x_mask"]), self.masks_for_input(batch["y_mask"])
    return {
      "y": jax.lax.stop_gradient(self.adapt(frozen_params, XY, x, mx, self.source_codes(k_x, batch))),
      "x": jax.lax.stop_gradient(self.adapt(frozen_params, YX, y, my, self.spatial_codes(k_y, y.shape[0]))),
    }

  def critic_loss(
    self,
    critic_params: Params,
    frozen_params: Params,
    batch: dict,
    key: jax.Array,
    fakes: dict[str, Adapted] | None = None,
  ):
    """Eq. 1, critic side, for D1, D2 (and DT1, DT2), plus the gradient penalty when configured.

    With ``gan_loss="lsgan"``, CycleGAN's least-squares loss instead. ``fakes`` (`fake_images`,
    possibly drawn from a history pool) replaces the fakes made from ``key``.
    """
    c = self.config
    k_gp = jax.random.split(key, 3)[2]
    x, y = batch["x"], batch["y"]
    mx, my = self.masks_for_input(batch["x_mask"]), self.masks_for_input(batch["y_mask"])
    fakes = fakes if fakes is not None else self.fake_images(frozen_params, batch, key)
    fake_y, fake_x = fakes["y"], fakes["x"]
    total, metrics = 0.0, {}
    gp_keys = iter(jax.random.split(k_gp, 4))
    # The X→Y critics judge real y and the fake paired with it as y's camera (camera_critics).
    cameras = dict.fromkeys(("D1", "DT1"), batch.get("y_camera")) | dict.fromkeys(("D2", "DT2"))

    def critic_term(name, critic_fn, real, fake, patches_fn=None, augment_keys=(None, None, None)):
      # critic_fn(inputs, key): the key draws the augmentation of real, fake and the interpolates
      nonlocal total
      k_real, k_fake, k_mixed = augment_keys
      if c.gan_loss == "lsgan":
        fn = patches_fn or critic_fn
        loss = losses.lsgan_critic_loss(fn(real, k_real), fn(fake, k_fake))
        metrics[f"critic/{name}/lsgan"] = loss
        total = total + loss
        return
      wasserstein = -losses.wgan_critic_loss(critic_fn(real, k_real), critic_fn(fake, k_fake))
      loss = -wasserstein
      metrics[f"critic/{name}/wasserstein"] = wasserstein
      if c.lipschitz == "gradient_penalty":
        gp = losses.gradient_penalty(lambda v: critic_fn(v, k_mixed), real, fake, next(gp_keys))
        metrics[f"critic/{name}/gradient_penalty"] = gp
        loss = loss + c.lambda_gp * gp
      total = total + loss

    for i, (name, real_img, real_mask, fake) in enumerate((("D1", y, my, fake_y), ("D2", x, mx, fake_x))):
      scores = functools.partial(self._critic_scores, critic_params, name, cameras=cameras[name])
      patches = functools.partial(self._critic_patches, critic_params, name, cameras=cameras[name])
      critic_term(
        name,
        scores,
        jnp.concatenate([real_img, real_mask], -1),
        jnp.concatenate([fake.adapted, fake.mask], -1),
        patches,
        self._augment_keys(key, i, 3),
      )
    # DT1: fake T_xy, real (T_yx)⁻¹; DT2, when the configuration has it, mirrors it.
    for name, fake, real in (("DT1", fake_y, fake_x), ("DT2", fake_x, fake_y)):
      if name in self.critic_names:
        scores = lambda p, _key=None, name=name: self._spatial_scores(critic_params, name, p, cameras[name])
        critic_term(name, scores, stm_lib.invert_params(real.transform, self.transform), fake.transform)
    metrics["critic/loss"] = total
    return total, metrics

  def generator_loss(
    self,
    generator_params: Params,
    frozen_params: Params,
    batch: dict,
    key: jax.Array,
    identity_features: Callable[[jax.Array], jax.Array] | None = None,
  ):
    """Eq. 7 for both directions, summed: adversarial + λ_cyc·cycle + λ_idt·identity + λ_siam·Siamese.

    With ``lambda_reid`` > 0, plus λ_reid·`losses.feature_identity_loss` of X→Y in
    ``identity_features`` (RGB ``[B, H, W, 3]`` → ``[B, D]``, a frozen re-ID network); with
    ``lambda_background_idt`` > 0, plus its weight times `losses.background_identity_loss` per direction.
    Returns the loss and ``(metrics, siamese_images)``; the latter are the images of eq. 6's pairs,
    for the SiaNet update.
    """
    c = self.config
    if self.uses_reid and identity_features is None:
      raise ConfigError(
        f"config.sagan.lambda_reid={c.lambda_reid} needs a re-ID network's features (identity_features): "
        "train.py trains one on the source (config.reid_teacher); set lambda_reid=0 to do without"
      )
    params = {**frozen_params, **generator_params}
    k_x, k_y = jax.random.split(key)
    x, y = batch["x"], batch["y"]
    mx, my = self.masks_for_input(batch["x_mask"]), self.masks_for_input(batch["y_mask"])
    z_x, z_y = self.source_codes(k_x, batch), self.spatial_codes(k_y, y.shape[0])
    adapted = {"x": self.adapt(params, XY, x, mx, z_x), "y": self.adapt(params, YX, y, my, z_y)}
    siamese_images = {
        "x": x, "x_s": adapted["x"].spatial, "x_adp": adapted["x"].adapted,
        "y": y, "y_s": adapted["y"].spatial, "y_adp": adapted["y"].adapted,
    }  # fmt: skip
    siamese_terms = self.siamese_losses(params, siamese_images) if self.uses_siamese else None

    total, metrics = 0.0, {}
    augment_keys = self._augment_keys(key, 2, 2)
    cycle_keys = jax.random.split(jax.random.fold_in(key, CYCLE_CODE_STREAM))
    for src, d, source, source_mask, target, target_mask, z, k_augment, k_cycle in (
      ("x", XY, x, mx, y, my, z_x, augment_keys[0], cycle_keys[0]),
      ("y", YX, y, my, x, mx, z_y, augment_keys[1], cycle_keys[1]),
    ):
      a = adapted[src]
      adversarial = self._adversarial(params, d, a, k_augment, batch.get("y_camera") if src == "x" else None)
      z_back = z if c.cycle_code == "shared" else self.spatial_codes(k_cycle, z.shape[0])
      train_scl = c.scl_cycles == "both" or src == "x"
      cycle, cycle_metrics = self._cycle_loss(params, d, source, source_mask, a, z, z_back, train_scl)
      identity = self._identity_loss(params, d, a, target, target_mask)
      siamese = siamese_terms[src] if siamese_terms is not None else 0.0
      direction_total = losses.generator_objective(
        adversarial, cycle, identity, siamese, c.lambda_cyc, c.lambda_idt, c.lambda_siam
      )
      total = total + direction_total
      metrics.update({f"generator/{src}/{k}": v for k, v in cycle_metrics.items()})
      metrics[f"generator/{src}/adversarial"] = adversarial
      metrics[f"generator/{src}/cycle"] = cycle
      metrics[f"generator/{src}/identity"] = identity
      metrics[f"generator/{src}/siamese"] = siamese
      if src == "x" and self.uses_reid:
        # Only G1's change is judged: the anchor is S1's warp of x, held fixed.
        reid = losses.feature_identity_loss(
          identity_features(a.adapted), jax.lax.stop_gradient(identity_features(a.spatial))
        )
        total = total + c.lambda_reid * reid
        metrics["generator/x/reid"] = reid
      if c.lambda_background_idt and c.pixel:
        background = losses.background_identity_loss(a.adapted, a.spatial, a.mask)
        total = total + c.lambda_background_idt * background
        metrics[f"generator/{src}/background_identity"] = background
      if c.spatial and c.lambda_mode_seeking:
        k_seek = jax.random.fold_in(key, MODE_SEEKING_STREAM + ("x", "y").index(src))
        mode_seeking = self._mode_seeking(params, d, source, source_mask, a, z, k_seek)
        total = total + c.lambda_mode_seeking * mode_seeking
        metrics[f"generator/{src}/mode_seeking"] = mode_seeking
    metrics["generator/loss"] = total
    return total, (metrics, siamese_images)

  def warp_distance(self, p_a: jax.Array, p_b: jax.Array) -> jax.Array:
    """``[B]``: how far apart two warps of each image are: the mean distance between where they send
    the four image corners (homography, affine), or between their TPS control offsets."""
    if self.transform == "tps":
      return jnp.mean(jnp.abs(p_a - p_b), axis=-1)
    corners = jnp.asarray([[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, 1.0], [-1.0, 1.0, 1.0]])

    def mapped(p):
      q = jnp.einsum("bij,kj->bki", stm_lib.transform_matrices(p, self.transform), corners)
      return q[..., :2] / q[..., 2:]

    return jnp.mean(jnp.sqrt(jnp.sum((mapped(p_a) - mapped(p_b)) ** 2, axis=-1) + 1e-12), axis=-1)

  def _mode_seeking(self, params, d: Direction, source, source_mask, a: Adapted, z, key) -> jax.Array:
    """`losses.mode_seeking_loss` of this direction's STM for a second spatial code per image."""
    z_other = self.spatial_codes(key, source.shape[0])
    t_other = self.stms[d.stm].apply({"params": params[d.stm]}, jnp.concatenate([source, source_mask], -1), z_other)
    code_distance = jnp.mean(jnp.abs(z - z_other), axis=-1)
    return losses.mode_seeking_loss(
      self.warp_distance(a.transform, t_other), code_distance, self.config.mode_seeking_eps
    )

  def _cycle_loss(
    self,
    params: Params,
    d: Direction,
    source: jax.Array,
    source_mask: jax.Array,
    a: Adapted,
    z: jax.Array,
    z_back: jax.Array | None = None,
    train_scl: bool = True,
  ):
    """Eq. 4 (disentangled: SCL + λ_pcl·PCL), or the entangled loss for WD, or CycleGAN's for WS.

    ``z_back``: the back STM's code (``cycle_code``); None is the forward code ``z``, as in the paper.
    ``train_scl``: False leaves SCL out of the loss (``scl_cycles``); it is still reported.
    """
    c = self.config
    fake = jnp.concatenate([a.adapted, a.mask], -1)
    if not c.spatial:
      return losses.pixel_cycle_loss(source, self.pixel_adapt(params, d.back_generator, a.adapted, a.mask)), {}
    # Path 1 (Fig. 3, purple): S2 predicts T_yx from the adapted image, with the same spatial code
    # (the paper) or its own (cycle_code="independent"), so that it must read the warp off the image.
    t_back = self.stms[d.back_stm].apply({"params": params[d.back_stm]}, fake, z if z_back is None else z_back)
    if not c.disentangled_cycle:
      back = self.apply_transform(fake, t_back)
      recovered = self.pixel_adapt(params, d.back_generator, back[..., :3], back[..., 3:4])
      entangled = losses.pixel_cycle_loss(source, recovered)
      return entangled, {"entangled_cycle": entangled}
    scl = losses.spatial_cycle_loss(
      self._comparable_transform(stm_lib.invert_params(a.transform, self.transform)), self._comparable_transform(t_back)
    )
    # Path 2 (orange): the exact inverse (T_xy)⁻¹ recovers the geometry, G2 the pixels (eq. 2).
    if not c.pcl_trains_stm:
      # PCL trains the pixel level only (Section III-C): the same path with T_xy held fixed.
      a = self.adapt(params, d, source, source_mask, z, transform=jax.lax.stop_gradient(a.transform))
      fake = jnp.concatenate([a.adapted, a.mask], -1)
    inverse = stm_lib.invert_params(a.transform, self.transform)
    back = self.apply_transform(fake, inverse)
    recovered = self.pixel_adapt(params, d.back_generator, back[..., :3], back[..., 3:4])
    # The valid region is held fixed: a gradient through it would let S1 lower PCL by pushing the
    # pixels it recovers badly out of the frame.
    valid = jax.lax.stop_gradient(self.inside(fake, inverse, previous=a.inside))
    pcl = losses.pixel_cycle_loss(source, recovered, valid=valid)
    trained_scl = scl if train_scl else jnp.zeros_like(scl)
    return losses.disentangled_cycle_loss(trained_scl, pcl, c.lambda_pcl), {"scl": scl, "pcl": pcl}

  def _identity_loss(self, params: Params, d: Direction, a: Adapted, target, target_mask) -> jax.Array:
    mode = self.config.identity_loss
    if mode == "mask" and self.config.pixel:
      return losses.mask_identity_loss(a.adapted, a.spatial, a.mask)  # eq. 5
    if mode == "mapping" and self.config.pixel:
      return losses.identity_mapping_loss(self.pixel_adapt(params, d.generator, target, target_mask), target)
    return jnp.zeros((), jnp.float32)

  def siamese_losses(self, params: Params, images: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Eq. 6 over the paper's pairs, per anchor domain.

    For X: positives X&X_s, X&X_adp; negatives X&Y_s, X&Y. For Y the mirror image.
    """
    embed = {k: self.sianet.apply({"params": params["SiaNet"]}, v) for k, v in images.items()}
    out = {}
    for a, b in (("x", "y"), ("y", "x")):
      anchor = jnp.concatenate([embed[a]] * 4)
      others = jnp.concatenate([embed[f"{a}_s"], embed[f"{a}_adp"], embed[f"{b}_s"], embed[b]])
      n = embed[a].shape[0]
      positive = jnp.concatenate([jnp.ones(2 * n), jnp.zeros(2 * n)])
      out[a] = losses.contrastive_loss(anchor, others, positive, self.config.siamese_margin)
    return out

  def sianet_loss(self, sianet_params: Params, images: dict[str, jax.Array]):
    """SiaNet's own objective: eq. 6 on the (fixed) images of the current generator step."""
    terms = self.siamese_losses({"SiaNet": sianet_params["SiaNet"]}, jax.lax.stop_gradient(images))
    loss = terms["x"] + terms["y"]
    return loss, {"sianet/loss": loss}
