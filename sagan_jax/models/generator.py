"""G1/G2: the CycleGAN ResNet generator (Zhu et al. 2017), on RGB + human mask."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from sagan_jax.models.layers import ModuleDef


def reflect_pad(x, pad: int):
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def instance_norm(dtype) -> nn.Module:
  # CycleGAN's InstanceNorm2d(affine=False, eps=1e-5): no learned scale/bias; the convolutions carry
  # a bias. Two-pass variance, E[(x - mean)²]: flax's default E[x²] - mean² cancels catastrophically
  # on a nearly constant feature map (common on small maps of flat image regions), and the 1/σ that
  # follows amplifies that rounding into gradients that differ by percents between reduction orders
  # (1 device against 8; tests/test_sagan.py).
  return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False, use_fast_variance=False, dtype=dtype)


# What G may do in a region: anything; recolour pixel by pixel with one colour function for every
# image; or apply one affine colour map per image to the whole region ("colour_map").
PATHS = ("full", "pointwise", "colour_map")


class ResidualBlock(nn.Module):
  features: int
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv

  @nn.compact
  def __call__(self, x):
    y = self.conv(self.features, (3, 3), padding="VALID", dtype=self.dtype)(reflect_pad(x, 1))
    y = nn.relu(instance_norm(self.dtype)(y))
    y = self.conv(self.features, (3, 3), padding="VALID", dtype=self.dtype)(reflect_pad(y, 1))
    return x + instance_norm(self.dtype)(y)


class ResnetGenerator(nn.Module):
  """7×7 conv, two stride-2 downsamplings, ``num_blocks`` residual blocks, two upsamplings, 7×7 conv, tanh.

  Input ``[B, H, W, C_in]`` (RGB in [-1, 1] plus the human mask, C_in = 4 in SA-GAN), output
  ``[B, H, W, 3]`` RGB in [-1, 1]. H and W must be divisible by 4. Parameters are float32; ``dtype``
  is the compute dtype (e.g. bfloat16), and the output is returned in float32. ``conv`` and
  ``conv_transpose`` build the spatial layers (flax's by default; `sagan_jax.models.layers`).
  """

  features: int = 64  # CycleGAN's ngf
  num_blocks: int = 9  # CycleGAN's resnet_9blocks, used for 256-pixel images
  out_channels: int = 3
  # Residual output: tanh(atanh(x_rgb) + Δ) with Δ's last layer zero-initialised, so the generator
  # starts as the identity mapping and learns the change of domain (our choice, not CycleGAN's).
  residual: bool = False
  # Width of a per-pixel path (1×1 convolutions on the un-normalised input, zero-initialised output)
  # added before the tanh; 0 = none. Instance norm removes each image's absolute colours from the
  # main path, so only this path can learn a camera's colour curve (our choice).
  pointwise_features: int = 0
  # "transpose": CycleGAN's stride-2 transposed convolutions; "resize": nearest-neighbour ×2 then a
  # 3×3 convolution, which cannot paint checkerboard patterns (Odena et al. 2016; our choice).
  upsample: str = "transpose"
  # "full": the main path may change every pixel (CycleGAN). "pointwise": on the person (the mask,
  # the input's last channel) only the per-pixel path acts, so G can recolour a person but cannot
  # repaint one. Needs ``residual`` and ``pointwise_features``.
  person_path: str = "full"
  # The same choice outside the mask: "pointwise" recolours the background without painting on it.
  # "colour_map" (either region): Δ there is M·atanh(rgb) + c, one 3×3 M and offset c per image and
  # region, read from the bottleneck features pooled over the region (zero-initialised, so G starts as
  # the identity): a region recoloured as a whole, as one camera's response would, never pixel by
  # pixel. Needs ``residual`` and a mask channel.
  background_path: str = "full"
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv
  conv_transpose: ModuleDef = nn.ConvTranspose

  @nn.compact
  def __call__(self, x):
    if x.shape[1] % 4 or x.shape[2] % 4:
      raise ValueError(
        f"the generator downsamples twice: image height and width must be divisible by 4, got {x.shape[1:3]}"
      )
    for region, path in (("person", self.person_path), ("background", self.background_path)):
      if path not in PATHS:
        raise ValueError(f"generator {region}_path must be one of {PATHS}, got {path!r}")
      if path == "pointwise" and not (self.residual and self.pointwise_features and x.shape[-1] > self.out_channels):
        raise ValueError(
          f"generator {region}_path='pointwise' needs residual=True, pointwise_features > 0 and a mask channel "
          f"in the input (got residual={self.residual}, pointwise_features={self.pointwise_features}, "
          f"{x.shape[-1]} input channels)"
        )
      if path == "colour_map" and not (self.residual and x.shape[-1] > self.out_channels):
        raise ValueError(
          f"generator {region}_path='colour_map' needs residual=True and a mask channel in the input "
          f"(got residual={self.residual}, {x.shape[-1]} input channels)"
        )
    paths = (self.person_path, self.background_path)
    rgb = x[..., : self.out_channels].astype(jnp.float32)
    person = x[..., -1:].astype(self.dtype)  # read only where a region's path is not "full"

    def gate(region_paths):  # the soft region (person, background) whose path is one of region_paths
      return (person if self.person_path in region_paths else 0.0) + (
        1.0 - person if self.background_path in region_paths else 0.0
      )

    x = x.astype(self.dtype)
    f = self.features
    conv = self.conv
    x = conv(f, (7, 7), padding="VALID", dtype=self.dtype)(reflect_pad(x, 3))
    x = nn.relu(instance_norm(self.dtype)(x))
    for mult in (2, 4):
      x = conv(f * mult, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), dtype=self.dtype)(x)
      x = nn.relu(instance_norm(self.dtype)(x))
    for _ in range(self.num_blocks):
      x = ResidualBlock(f * 4, dtype=self.dtype, conv=conv)(x)
    colour_maps = self._colour_maps(x, person) if "colour_map" in paths else None
    if self.upsample not in ("transpose", "resize"):
      raise ValueError(f"generator upsample must be 'transpose' or 'resize', got {self.upsample!r}")
    for mult in (2, 1):
      if self.upsample == "resize":
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        x = conv(f * mult, (3, 3), padding="VALID", dtype=self.dtype)(reflect_pad(x, 1))
      else:
        # Output exactly twice the input size, as PyTorch's ConvTranspose2d(3, 2, padding=1, output_padding=1).
        x = self.conv_transpose(f * mult, (3, 3), strides=(2, 2), padding="SAME", dtype=self.dtype)(x)
      x = nn.relu(instance_norm(self.dtype)(x))
    last_init = nn.initializers.zeros if self.residual else nn.linear.default_kernel_init
    x = conv(self.out_channels, (7, 7), padding="VALID", dtype=self.dtype, kernel_init=last_init)(reflect_pad(x, 3))
    if any(path != "full" for path in paths):  # the main path acts only in "full" regions
      x = x * gate(("full",))
    if self.pointwise_features:
      p = nn.Conv(self.pointwise_features, (1, 1), dtype=self.dtype)(rgb.astype(self.dtype))
      p = nn.Conv(self.pointwise_features, (1, 1), dtype=self.dtype)(nn.leaky_relu(p, 0.2))
      p = nn.Conv(self.out_channels, (1, 1), dtype=self.dtype, kernel_init=nn.initializers.zeros)(nn.leaky_relu(p, 0.2))
      # Gated only when a region has a colour map: the ungated sum keeps earlier runs bit for bit.
      x = x + (p * gate(("full", "pointwise")) if colour_maps is not None else p)
    if self.residual:
      # 0.999 keeps atanh finite on saturated pixels (|x| = 1 after the [-1, 1] scaling of 0 and 255).
      logits = jnp.arctanh(jnp.clip(rgb, -0.999, 0.999))
      if colour_maps is not None:
        for region_gate, (m, c) in colour_maps:
          x = x + region_gate * (jnp.einsum("bhwc,bdc->bhwd", logits, m) + c[:, None, None, :]).astype(self.dtype)
      return jnp.tanh(logits + x.astype(jnp.float32))
    return jnp.tanh(x).astype(jnp.float32)

  def _colour_maps(self, features, person):
    """``[(region gate, (M [B, 3, 3], c [B, 3]))]`` for each region whose path is "colour_map": each image's
    bottleneck features averaged over the region (its mask, average-pooled to their size), then one
    zero-initialised dense layer, so every map starts at Δ = 0."""
    b, h, w, _ = features.shape
    small = nn.avg_pool(
      person, (person.shape[1] // h, person.shape[2] // w), strides=(person.shape[1] // h, person.shape[2] // w)
    )
    out = []
    for region, path, weight, full in (
      ("person", self.person_path, small, person),
      ("background", self.background_path, 1.0 - small, 1.0 - person),
    ):
      if path != "colour_map":
        continue
      pooled = (features * weight).sum((1, 2)) / (weight.sum((1, 2)) + 1e-6)
      theta = nn.Dense(12, kernel_init=nn.initializers.zeros, dtype=self.dtype, name=f"colour_map_{region}")(pooled)
      theta = theta.astype(jnp.float32)
      out.append((full, (theta[:, :9].reshape(b, 3, 3), theta[:, 9:])))
    return out
