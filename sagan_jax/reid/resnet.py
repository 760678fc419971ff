"""ResNet-50 with torchvision's parameter layout, and the IDE head (Section IV-B of the paper).

Module and parameter names mirror torchvision's ``resnet50`` state dict so ImageNet weights map
one to one (`sagan_jax.reid.convert_torchvision`): ``conv1``, ``bn1``, ``layer{1..4}_{i}`` for
torchvision's ``layer{1..4}.{i}`` with ``conv1..3``/``bn1..3`` and ``downsample_conv``/
``downsample_bn`` for ``downsample.0``/``downsample.1``. Torch's conventions are kept where they
change numbers: explicit symmetric padding (not "SAME"), the stride on the 3×3 convolution
(torchvision's "ResNet v1.5"), max pooling padded with -inf, batch norm ε = 1e-5 and running
statistics updated with momentum 0.1 (Flax momentum 0.9).

IDE (ID-discriminative embedding): the 2048-d global-average-pooled ``pool5`` feature followed by
one fully connected layer to the training identities; the paper changes only that layer. Under a
batch-sharded jit, batch statistics are computed over the global batch (synchronised BN).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sagan_jax.models.layers import ModuleDef

RESNET50_STAGES = (3, 4, 6, 3)


def _batch_norm(train: bool, dtype, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name)


class Bottleneck(nn.Module):
  features: int  # width of the 3×3 convolution; the block outputs 4× this
  stride: int
  downsample: bool
  dtype: jnp.dtype = jnp.float32
  conv: ModuleDef = nn.Conv

  @nn.compact
  def __call__(self, x, train: bool):
    conv = lambda f, k, s, p, name: self.conv(
      f, (k, k), (s, s), padding=((p, p), (p, p)), use_bias=False, dtype=self.dtype, name=name
    )
    y = nn.relu(_batch_norm(train, self.dtype, "bn1")(conv(self.features, 1, 1, 0, "conv1")(x)))
    y = nn.relu(_batch_norm(train, self.dtype, "bn2")(conv(self.features, 3, self.stride, 1, "conv2")(y)))
    y = _batch_norm(train, self.dtype, "bn3")(conv(4 * self.features, 1, 1, 0, "conv3")(y))
    if self.downsample:
      x = _batch_norm(train, self.dtype, "downsample_bn")(
        conv(4 * self.features, 1, self.stride, 0, "downsample_conv")(x)
      )
    return nn.relu(x + y)


class ResNet(nn.Module):
  """Bottleneck ResNet returning the pooled feature (``pool5``: 2048-d for ResNet-50).

  ``stage_sizes``/``width`` default to ResNet-50; smaller values give CPU-sized models for tests.
  ``conv`` and ``max_pool`` build those layers (flax's by default; `sagan_jax.models.layers`).
  """

  stage_sizes: Sequence[int] = RESNET50_STAGES
  width: int = 64
  dtype: jnp.dtype = jnp.float32
  conv: ModuleDef = nn.Conv
  max_pool: Callable = nn.max_pool

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.astype(self.dtype)
    x = self.conv(self.width, (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False, dtype=self.dtype, name="conv1")(
      x
    )
    x = nn.relu(_batch_norm(train, self.dtype, "bn1")(x))
    x = self.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, blocks in enumerate(self.stage_sizes):
      for i in range(blocks):
        stride = 2 if stage > 0 and i == 0 else 1
        x = Bottleneck(
          self.width * 2**stage,
          stride,
          downsample=i == 0,
          dtype=self.dtype,
          conv=self.conv,
          name=f"layer{stage + 1}_{i}",
        )(x, train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # pool5, float32 whatever the compute dtype


class IDE(nn.Module):
  """ResNet backbone + a classifier over the training identities; returns ``(logits, pool5)``."""

  num_classes: int
  stage_sizes: Sequence[int] = RESNET50_STAGES
  width: int = 64
  dtype: jnp.dtype = jnp.float32
  conv: ModuleDef = nn.Conv
  max_pool: Callable = nn.max_pool

  @nn.compact
  def __call__(self, x, train: bool = False):
    features = ResNet(self.stage_sizes, self.width, self.dtype, self.conv, self.max_pool, name="backbone")(x, train)
    # torchvision's default init for a new nn.Linear is replaced by IDE's small normal init.
    logits = nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.001), name="classifier")(features)
    return logits, features


def imagenet_normalize(images: jax.Array) -> jax.Array:
  """[-1, 1] RGB (the pipeline's range) → torchvision's ImageNet-normalised input."""
  mean = jnp.asarray([0.485, 0.456, 0.406], jnp.float32)
  std = jnp.asarray([0.229, 0.224, 0.225], jnp.float32)
  return ((images + 1.0) / 2.0 - mean) / std
