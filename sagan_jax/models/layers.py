"""The layer constructors SA-GAN's networks and the IDE ResNet are built from, flax's by default.

Networks take each one as a module argument (``conv: ModuleDef = nn.Conv``, as flax's ImageNet
example does); model builders (`sagan_jax.sagan.SAGAN`, `sagan_jax.reid.ide.make_model`) take a
:class:`Layers` and hand its fields on. `sagan_jax.cpu.layers` is the CPU fast path's set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn

ModuleDef = Any


@dataclasses.dataclass(frozen=True)
class Layers:
  conv: ModuleDef = nn.Conv  # called as nn.Conv(features, kernel_size, strides, padding, ...)
  conv_transpose: ModuleDef = nn.ConvTranspose
  max_pool: Callable = nn.max_pool  # flax.linen.max_pool's signature
