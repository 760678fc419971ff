"""SA-GAN's hyper-parameters: the paper's values where it gives them, the source of every other.

`sagan_config()` is the ``sagan`` section of an experiment config (``configs/*.py``).
`VARIANTS` is the one table of the rows the paper reports; `apply_variant` switches a config to one.
"""

from __future__ import annotations

import dataclasses

import ml_collections


@dataclasses.dataclass(frozen=True)
class Variant:
  title: str  # the row's name in the paper's tables
  sagan: dict | None  # the `sagan_config` fields the row sets; None: no GAN (the Original row)


# SA-GAN with every part on, M = 1; each row below sets all of these switches.
_SAGAN = {
  "spatial": True,
  "spatial_critic": True,
  "pixel": True,
  "disentangled_cycle": True,
  "siamese": True,
  "use_mask": True,
  "identity_loss": "mask",
  "num_codes": 1,
}
# CycleGAN as published (Zhu et al. 2017): pixel level only, RGB input, its ResNet generator and
# instance-norm PatchGAN, least squares, a history pool of 50 fakes, Adam(2e-4, 0.5, 0.999)
# constant for the first half of the updates then linear to zero, one D update per G update.
_CYCLEGAN = {
  **_SAGAN,
  "spatial": False,
  "spatial_critic": False,
  "siamese": False,
  "use_mask": False,
  "identity_loss": "none",
  "lambda_idt": 5.0,  # CycleGAN*'s identity mapping weight: 0.5 λ_cyc, as published
  "generator_residual": False,
  "generator_pointwise_features": 0,
  "generator_upsample": "transpose",
  "generator_person_path": "full",
  "generator_background_path": "full",
  "lambda_background_idt": 0.0,  # no mask to tell the background by
  "critic_norm": "instance",
  "gan_loss": "lsgan",
  "lipschitz": "none",
  "n_critic": 1,
  "history_pool": 50,
  "learning_rate": 2e-4,
  "adam_b1": 0.5,
  "adam_b2": 0.999,
  "stm_learning_rate": 0.0,
  "lr_schedule": "linear_decay",
}

# Every row of Tables I–III, in the order the ablation reports them. WS, WP and WD use M = 1, as the
# paper compares them with SA-GAN [M=1] (Table III).
VARIANTS = {
  "original": Variant("Original", None),  # IDE on the raw source images
  "cyclegan": Variant("CycleGAN", _CYCLEGAN),
  "cyclegan_star": Variant("CycleGAN*", {**_CYCLEGAN, "identity_loss": "mapping"}),  # + identity mapping loss
  "wp": Variant("SA-GAN (WP)", {**_SAGAN, "pixel": False}),  # spatial level only: images are S1's output
  "wd": Variant("SA-GAN (WD)", {**_SAGAN, "disentangled_cycle": False}),  # ‖G2(S2(G1(S1(x)))) - x‖, not eq. 4
  "ws": Variant("SA-GAN (WS)", {**_SAGAN, "spatial": False, "spatial_critic": False}),  # pixel level only
  "sagan": Variant("SA-GAN [M=1]", _SAGAN),
  "sagan_m10": Variant("SA-GAN [M=10]", {**_SAGAN, "num_codes": 10}),
}


def sagan_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Images (height, width). Re-ID crops are 256×128 (Section IV-B); the GAN works at the same size.
  c.image_size = (256, 128)
  c.dtype = "float32"  # compute dtype of every network ("float32" or "bfloat16"); parameters stay float32

  # Generators G1/G2: CycleGAN's ResNet generator (paper: "CycleGAN-like"; CycleGAN's defaults).
  c.generator_features = 64
  c.generator_blocks = 9
  # True: G starts as the identity mapping (tanh(atanh(x) + Δ), Δ's last layer zero) instead of
  # CycleGAN's random output (False, the paper's "CycleGAN-like"). The short-budget recipe turns it on.
  c.generator_residual = False
  # Width of a per-pixel path (1×1 convs on the un-normalised RGB) beside the main one, which
  # instance norm leaves blind to absolute colour; 0 = none (CycleGAN). The short-budget recipe: 16.
  c.generator_pointwise_features = 0
  # "transpose" (CycleGAN) or "resize" (nearest ×2 + 3×3 conv), measured level (docs/fidelity.md).
  c.generator_upsample = "transpose"
  # What G may do to the person (the mask): "full" (any change, CycleGAN), "pointwise" (only the
  # per-pixel colour path, so a person is recoloured, never repainted; backgrounds keep both paths) or
  # "colour_map" (one affine colour map per image over the whole region, read from G's features).
  c.generator_person_path = "full"
  # The same outside the mask: "pointwise" lets G recolour the background but not paint on it.
  c.generator_background_path = "full"
  # Critics D1/D2: PatchGAN (CycleGAN's discriminator) as WGAN critics; layer norm (WGAN-GP's advice).
  c.critic_features = 64
  c.critic_layers = 3
  c.critic_norm = "layer"
  # What D1/D2 see of the mask channel: "soft" (the warped mask as it is, the paper's input: its soft
  # edges tell warped fakes from binary real masks), "straight_through" (both rounded, the gradient
  # passed to S1 unchanged), "binary" (rounded, no gradient to S1 through it) or "none".
  c.critic_mask = "soft"
  # What D1/D2 see of the RGB: "frame" (the whole image, the paper), "person" (the background set
  # to 0, mid-grey, by that mask, so the critics cannot ask G1 to paint backgrounds) or "background"
  # (the person set to 0, so they cannot ask G1 to repaint clothing towards the target's people).
  c.critic_region = "frame"
  # Not in the paper ("none" = off): DiffAugment on D1/D2's inputs, real and fake alike, in both
  # players' updates (`sagan_jax.sagan.augment`): "translation", "cutout" or "translation,cutout".
  # Aimed at critics that memorise a small target set.
  c.critic_augment = "none"
  # Spatial transformer modules S1/S2. Homography is the paper's choice (Section IV-B).
  c.transform = "homography"  # or "affine", "tps"
  c.tps_control_hw = (5, 3)  # our choice: a 5×3 grid suits 2:1 person crops
  c.stm_features = 32  # localisation network: our choice (the paper does not describe it)
  c.stm_layers = 4
  c.stm_hidden = 128
  # How the localisation network turns its feature map into the hidden layer: "pool" (global
  # average) or "flatten" (every position its own weights, as ST-GAN's fully connected layers).
  c.stm_head = "pool"
  # S2's head apart from S1's: "same" (stm_head's), "pool" or "flatten". S2 maps every target view
  # back to the source's one, so it must read where the person stands; S1's warp follows its code.
  c.stm_head_s2 = "same"
  c.z_dim = 8  # spatial code dimension: our choice (the paper does not give it)
  # How z is drawn: "normal" (N(0, I), the paper's) or "categorical" (one of z_dim one-hot codes, scaled
  # by √z_dim to N(0, I)'s mean energy, as InfoGAN's categorical code), for targets whose viewpoints
  # are a few discrete cameras: a continuous z puts warps between them (docs/results.md).
  c.code_distribution = "normal"
  # The code the back STM gets in the cycle (eq. 3): "shared" (S1's, as Section III-C says) or
  # "independent" (its own draw). With the shared code S2 can answer SCL from z alone and ignore the
  # image, and then D_T's real sample (T_yx)⁻¹ says nothing about the target (docs/results.md).
  c.cycle_code = "shared"
  # Which cycles' SCL trains (eq. 3): "both" (the paper's) or "source" (X→Y→X only). The source has
  # one view, so S2 can always return a warped person to it; in Y→X→Y S1 is asked to restore y's view
  # from an image that no longer shows it, which a multi-modal S1 cannot do (docs/results.md).
  c.scl_cycles = "both"
  # Which directions have a spatial critic: "both" (DT1 judges T_xy against (T_yx)⁻¹, DT2 mirrors it
  # for T_yx; our reading of "similar") or "source" (DT1 only, eq. 1 as written). DT2 trains S2
  # towards the inverse of S1's warps, whatever view the target image shows (docs/results.md).
  c.spatial_critics = "both"
  # Not in the paper (False = off): S1's categorical code names a target camera (z_dim = the target's
  # cameras), and D1 and DT1 have one output per camera and judge each translation against the images
  # of the camera its code names, so each code must reach that camera's view (docs/results.md).
  c.camera_critics = False
  # Our choice: "border" repeats the edge pixels where a warp reads outside the frame. Zero padding
  # paints grey wedges on spatially adapted images only, a give-away for the critics.
  c.warp_padding = "border"
  # Spatial critic D_T: an MLP on transformation parameters; our choice of size.
  c.spatial_critic_hidden = 128
  c.spatial_critic_layers = 2
  # SiaNet: SPGAN's architecture.
  c.sianet_widths = (64, 128, 256, 512)
  c.sianet_embed_dim = 128

  # Loss weights (eq. 4, 7). The paper gives no values; λ_cyc, λ_idt, λ_siam and the margin are SPGAN's.
  c.lambda_cyc = 10.0  # SPGAN / CycleGAN
  # Our choice: with λ_pcl = 1 the PCL's effective weight λ_cyc·λ_pcl is CycleGAN's cycle weight 10.
  c.lambda_pcl = 1.0
  # Whether PCL's gradient reaches S1/S2 (it does in the paper's eq. 7). False holds T_xy fixed in
  # PCL's path (one more G1 pass), as Section III-C assigns PCL to the pixel level.
  c.pcl_trains_stm = True
  c.lambda_idt = 5.0  # SPGAN
  c.lambda_siam = 2.0  # SPGAN; 0 turns eq. 6 off (no SiaNet), as siamese=False does
  # Mode seeking on the spatial codes (`losses.mode_seeking_loss`; not in the paper, 0 = off): two
  # codes of one image are asked for different warps, so M codes can cover a target's viewpoints.
  c.lambda_mode_seeking = 0.0
  c.mode_seeking_eps = 0.05  # our choice: bounds the loss where two codes' warps coincide (corner units)
  c.siamese_margin = 2.0  # SPGAN
  # Not in the paper (0 = off): `losses.feature_identity_loss` of X→Y in a frozen re-ID network
  # trained on the untranslated source (the experiment's ``reid_teacher``), so G1 may restyle a person
  # only in ways that network still recognises.
  c.lambda_reid = 0.0
  # Not in the paper (0 = off): λ·`losses.background_identity_loss`, G1's (and G2's) change outside
  # the warped mask, beside eq. 5's inside it. Aimed at the texture G1 paints next to the outline,
  # which `fidelity.detail_error` reads (docs/fidelity.md). Needs the mask (use_mask).
  c.lambda_background_idt = 0.0
  # The adversarial game: "wgan" (eq. 1, the paper's) or "lsgan" (CycleGAN's least squares).
  c.gan_loss = "wgan"
  # Lipschitz constraint of the WGAN critics (the paper cites WGAN without saying which).
  c.lipschitz = "gradient_penalty"  # WGAN-GP; or "weight_clipping" (original WGAN); "none" (LSGAN)
  c.lambda_gp = 10.0  # WGAN-GP's value
  c.clip_value = 0.01  # original WGAN's value
  c.n_critic = 5  # critic updates per generator update: WGAN's value
  c.history_pool = 0  # fakes a critic draws from a pool of this many earlier ones; CycleGAN: 50

  # Optimisers. Adam(1e-4, 0.5, 0.9) is WGAN-GP's; with weight clipping, RMSProp(5e-5) as WGAN.
  c.learning_rate = 1e-4
  c.stm_learning_rate = 0.0  # S1/S2's own Adam rate; 0 = learning_rate
  c.adam_b1 = 0.5
  c.adam_b2 = 0.9
  c.clipping_learning_rate = 5e-5
  c.sianet_learning_rate = 1e-4  # our choice (SPGAN trains SiaNet alongside the generators)
  # "constant", or "linear_decay" (CycleGAN: constant for the first half of the updates, then to 0).
  c.lr_schedule = "constant"
  # Not in the paper (0 = off): the decay of an exponential moving average of G1, G2, S1 and S2,
  # which translation, fidelity and the sample grids then use instead of the last update's weights.
  c.generator_ema = 0.0

  # Ablation switches (Table III and the baselines of Tables I–II; see `apply_variant`).
  c.spatial = True  # S1/S2, D_T and SCL; False is SA-GAN (WS)
  c.pixel = True  # G1/G2; False is SA-GAN (WP): the output of S1 without pixel-level adaptation
  c.disentangled_cycle = True  # eq. 4; False is SA-GAN (WD): the ordinary, entangled cycle loss
  c.identity_loss = "mask"  # eq. 5; "mapping" is CycleGAN's ‖G1(y) - y‖ (CycleGAN*); or "none"
  c.siamese = True  # eq. 6 with SiaNet
  c.spatial_critic = True  # D_T
  c.use_mask = True  # feed the human mask to the networks; False replaces it by ones (plain CycleGAN)
  c.num_codes = 10  # M: spatial codes per source image when translating (SA-GAN [M=10])
  return c


def apply_variant(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  """Sets the fields of ``config`` (a `sagan_config`) that row ``variant`` of `VARIANTS` sets, in place."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}")
  fields = VARIANTS[variant].sagan
  if fields is None:
    raise ValueError(f"variant {variant!r} trains no GAN: it has no SA-GAN configuration")
  config.update(fields)
  return config


def apply_tiny_scale(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks ``config`` in place to 32×16 images and narrow networks that compile and train in
  seconds on a CPU: the scale of the tests and of ``python -m bench.bench_sagan_step --scale cpu``."""
  config.image_size = (32, 16)
  config.generator_features, config.generator_blocks = 8, 1
  config.critic_features, config.critic_layers = 16, 2
  config.stm_features, config.stm_layers, config.stm_hidden = 16, 3, 32
  config.spatial_critic_hidden = 32
  config.sianet_widths, config.sianet_embed_dim = (8, 16), 16
  config.z_dim = 2
  return config
