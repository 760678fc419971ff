"""The opt-in CPU fast path: layers whose gradients XLA-CPU runs fast, and host allocator settings.

Networks take their convolution, transposed convolution and max pooling from the caller, flax's by
default. On a CPU backend the entry points (``train.py``, ``evaluate.py``, the mask CLI, ``bench/``)
call :func:`setup`, which returns :func:`layers`: the same functions and parameters with gradients
written as matrix products, because XLA's CPU backend lowers convolution gradients to slow
convolutions of unusual shapes (per-layer and per-step timings: `python -m bench.bench_convs`,
`bench.bench_ide_step`). ``--nocpu_fast_path`` turns all of it off. Accelerators never see this
module: cuDNN and the TPU compiler have fast gradients of their own.

* filter gradient: ``dw = patches(x)ᵀ · dy`` (im2col);
* input gradient: ``z = dy · wᵀ``, each tap's share added back at its offset (col2im, one
  ``lax.pad`` with interior padding per tap, which XLA fuses into one loop);
* a 1×1 convolution's forward pass and both gradients are single products;
* transposed convolutions run as one undilated stride-1 convolution and a depth-to-space;
* max pooling's gradient is k² fused compares and one col2im instead of ``select_and_scatter``.

Supported: NHWC input, HWIO kernel, explicit or "VALID"/"SAME" padding, no dilation, one feature
group; the modules fall back to flax's computation for anything else. Products accumulate in
float32 whatever the compute dtype.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
import os
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sagan_jax.models.layers import Layers

_NHWC = ("NHWC", "HWIO", "NHWC")
# im2col patches are built a band of output rows at a time, each at most this size, so their memory
# stays bounded at any batch; bands split rows, never the batch, which the mesh shards.
_CHUNK_BYTES = 8 << 20
_MAX_UNROLLED_BANDS = 8
# Narrow-output layers (k·k·cin > _MAX_EXPANSION·cout: SA-GAN's 7×7 ends, the critics' one-channel
# output) keep XLA's gradients: dy·wᵀ would be many times dy's size (`python -m bench.bench_convs`).
_MAX_EXPANSION = 9


def _cpu_flags(cpuinfo: str) -> frozenset[str]:
  """The feature flags of the first processor listed in a Linux ``/proc/cpuinfo`` text."""
  for line in cpuinfo.splitlines():
    key, _, value = line.partition(":")
    if key.strip() == "flags":
      return frozenset(value.split())
  return frozenset()


@functools.cache
def _host_has_avx512() -> bool:
  """Whether this host's CPU has AVX-512 (Linux; False where ``/proc/cpuinfo`` cannot be read)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
      return "avx512f" in _cpu_flags(f.read())
  except OSError:
    return False


# With AVX-512, XLA-CPU's own filter gradient of a stride-1 k×k layer beats the product up to this
# batch; on AVX2, and above it, it is the slower one (`python -m bench.bench_convs --batch N`).
_XLA_FILTER_GRADIENT_MAX_BATCH = 32


def takes_xla_filter_gradient(batch: int, kernel: Sequence[int], strides: Sequence[int]) -> bool:
  """Whether :func:`conv` (``xla_filter_gradients=True``) takes XLA's filter gradient for this layer here."""
  return (
    tuple(strides) == (1, 1)
    and kernel[0] * kernel[1] > 1
    and batch <= _XLA_FILTER_GRADIENT_MAX_BATCH
    and _host_has_avx512()
  )


def conv_transpose(x: jax.Array, w: jax.Array, strides: Sequence[int], padding, convolution=None) -> jax.Array:
  """``lax.conv_transpose`` (NHWC, HWIO, ``transpose_kernel=False``) without dilating its input.

  Each output phase ``(r_h, r_w)`` (the output pixels ``s·i + r``) reads a fixed subset of the
  kernel's taps at fixed offsets of the undilated input, so the layer is one stride-1 convolution
  with ``s_h·s_w·cout`` output channels (unused taps zero) and a depth-to-space; XLA's dilated form
  reads mostly inserted zeros. ``padding`` as ``lax.conv_transpose``'s ("SAME", "VALID" or explicit
  pairs of the dilated convolution); ``convolution`` runs the stride-1 convolution (default :func:`conv`).
  """
  convolution = convolution or conv
  if x.ndim != 4 or w.ndim != 4 or x.shape[-1] != w.shape[2]:
    raise ValueError(
      f"conv_transpose needs NHWC input and an HWIO kernel with matching channels, got {x.shape} and {w.shape}"
    )
  n, h, wd, _ = x.shape
  kh, kw, cin, cout = w.shape
  strides = tuple(int(s) for s in strides)
  if isinstance(padding, str):
    pads = [_conv_transpose_pads(k, s, padding) for k, s in zip((kh, kw), strides)]
  else:
    pads = [(int(lo), int(hi)) for lo, hi in padding]
  tables, crops = [], []
  for k, s, (lo, hi), size in zip((kh, kw), strides, pads, (h, wd)):
    out = (size - 1) * s + 1 + lo + hi - k + 1  # lax's output size along this axis
    if out < 1:
      raise ValueError(f"conv_transpose: input {x.shape[1:3]}, kernel {(kh, kw)} and padding {pads} give no output")
    # out[s·i + r] = Σ w[t]·x[i + d] over the taps t with (r + t - lo) = s·d: offsets d of phase r.
    taps = [(r, t, (r + t - lo) // s) for r in range(s) for t in range(k) if (r + t - lo) % s == 0]
    d_min, d_max = min(d for *_, d in taps), max(d for *_, d in taps)
    table = np.full((d_max - d_min + 1, s), k)  # index k: the zero tap appended below
    for r, t, d in taps:
      table[d - d_min, r] = t
    per_phase = -(-out // s)
    tables.append(table)
    crops.append((out, -d_min, per_phase - 1 + d_max - (size - 1)))  # lax.pad crops where negative
  w_ext = jnp.pad(w, ((0, 1), (0, 1), (0, 0), (0, 0)))
  (th, tw), (sh, sw) = tables, strides
  kernel = w_ext[th[:, None, :, None], tw[None, :, None, :]]  # [Lh, Lw, sh, sw, cin, cout]
  kernel = jnp.transpose(kernel, (0, 1, 4, 2, 3, 5)).reshape(th.shape[0], tw.shape[0], cin, sh * sw * cout)
  (out_h, pad_top, pad_bottom), (out_w, pad_left, pad_right) = crops
  x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (pad_top, pad_bottom, 0), (pad_left, pad_right, 0), (0, 0, 0)))
  y = convolution(x, kernel.astype(x.dtype), (1, 1), ((0, 0), (0, 0)), dimension_numbers=_NHWC)
  _, mh, mw, _ = y.shape
  y = y.reshape(n, mh, mw, sh, sw, cout).transpose(0, 1, 3, 2, 4, 5).reshape(n, mh * sh, mw * sw, cout)
  return y[:, :out_h, :out_w]


def _conv_transpose_pads(k: int, s: int, padding: str) -> tuple[int, int]:
  """The padding of the dilated input for a string ``padding``, as ``lax.conv_transpose`` computes it."""
  if padding == "SAME":
    length = k + s - 2
    before = k - 1 if s > k - 1 else -(-length // 2)
  elif padding == "VALID":
    length = k + s - 2 + max(k - s, 0)
    before = k - 1
  else:
    raise ValueError(f"conv_transpose padding must be 'SAME', 'VALID' or (low, high) pairs, got {padding!r}")
  return before, length - before


def xla_conv(x: jax.Array, w: jax.Array, strides: Sequence[int], padding) -> jax.Array:
  """``lax.conv_general_dilated`` in NHWC/HWIO (the reference :func:`conv` is checked against)."""
  return lax.conv_general_dilated(x, w, tuple(strides), padding, dimension_numbers=_NHWC)


def _is_nhwc(dimension_numbers) -> bool:
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return tuple(dimension_numbers) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
  return tuple(dimension_numbers) == _NHWC


def conv(
  x: jax.Array,
  w: jax.Array,
  window_strides: Sequence[int],
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count: int = 1,
  precision=None,
  preferred_element_type=None,
  *,
  xla_filter_gradients: bool = True,
) -> jax.Array:
  """``lax.conv_general_dilated`` with matrix-product gradients where they pay; its signature, so
  ``nn.Conv(conv_general_dilated=conv)`` takes it.

  ``dimension_numbers=None`` means NHWC/HWIO here. Cases outside NHWC/HWIO, one feature group and no
  dilation are ``lax.conv_general_dilated`` itself.
  ``xla_filter_gradients=False`` keeps the products for the filter gradient on an AVX-512 host too
  (see `takes_xla_filter_gradient`).
  """
  supported = (
    (dimension_numbers is None or _is_nhwc(dimension_numbers))
    and x.ndim == 4
    and all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
    and feature_group_count == 1
    and preferred_element_type is None
  )
  if not supported:
    return lax.conv_general_dilated(
      x,
      w,
      window_strides,
      padding,
      lhs_dilation,
      rhs_dilation,
      dimension_numbers,
      feature_group_count,
      precision=precision,
      preferred_element_type=preferred_element_type,
    )
  del precision  # float32 products are exact-rounded on CPU; the forward keeps XLA's default
  strides = tuple(int(s) for s in window_strides)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(x.shape[1:3], w.shape[:2], strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  kh, kw, cin, cout = w.shape
  if kh * kw * cin > _MAX_EXPANSION * cout:
    return xla_conv(x, w, strides, pads)
  xla_dw = xla_filter_gradients and takes_xla_filter_gradient(x.shape[0], (kh, kw), strides)
  return _conv(x, w, strides, pads, xla_dw)


def _forward(x, w, strides, pads):
  """1×1 convolutions as one product, the rest XLA's (whose k×k forward im2col did not beat)."""
  kh, kw = w.shape[:2]
  return matmul_conv(x, w, strides, pads) if kh == kw == 1 else xla_conv(x, w, strides, pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, strides, pads, xla_dw):
  """The convolution with product gradients; ``xla_dw``: its filter gradient is XLA's instead."""
  return _forward(x, w, strides, pads)


def _conv_fwd(x, w, strides, pads, xla_dw):
  return _forward(x, w, strides, pads), (x, w)


def matmul_conv(x, w, strides, pads):
  """The forward convolution as im2col products, a band of output rows at a time."""
  kh, kw, cin, cout = w.shape
  n, h, wd, _ = x.shape
  sh, sw = strides
  (ph0, ph1), (pw0, pw1) = pads
  out_h, out_w = (h + ph0 + ph1 - kh) // sh + 1, (wd + pw0 + pw1 - kw) // sw + 1
  w2 = w.reshape(kh * kw * cin, cout)
  if kh == kw == 1 and not any(pads[0] + pads[1]):
    xs = x if sh == sw == 1 else x[:, ::sh, ::sw]
    return _matmul(xs.reshape(-1, cin), w2).astype(x.dtype).reshape(n, out_h, out_w, cout)
  x_padded = jnp.pad(x, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0)))
  bands = [
    _matmul(patches, w2).astype(x.dtype).reshape(n, r1 - r0, out_w, cout)
    for r0, r1, patches in _patch_bands(x_padded, kh, kw, strides, out_h, out_w)
  ]
  return bands[0] if len(bands) == 1 else jnp.concatenate(bands, axis=1)


def _taps(x_padded, kh, kw, strides, out_h, out_w):
  """The k·k strided views x_padded[:, i + s·h, j + s·w, :] in (i, j) order."""
  sh, sw = strides
  n, _, _, c = x_padded.shape
  return [
    lax.slice(x_padded, (0, i, j, 0), (n, i + sh * (out_h - 1) + 1, j + sw * (out_w - 1) + 1, c), (1, sh, sw, 1))
    for i in range(kh)
    for j in range(kw)
  ]


def _matmul(a, b, contract=(1, 0)):
  return lax.dot_general(a, b, (((contract[0],), (contract[1],)), ((), ())), preferred_element_type=jnp.float32)


def _patch_bands(x_padded, kh, kw, strides, out_h, out_w):
  """Yields (r0, r1, im2col patches of output rows r0:r1 as an (n·rows·out_w, kh·kw·cin) matrix).

  Each band's patches stay under _CHUNK_BYTES.
  """
  n, _, _, cin = x_padded.shape
  row_bytes = n * out_w * kh * kw * cin * jnp.dtype(x_padded.dtype).itemsize
  rows = -(-out_h // -(-out_h // max(1, _CHUNK_BYTES // row_bytes)))  # equal bands, each ≤ the budget
  for r0 in range(0, out_h, rows):
    r1 = min(out_h, r0 + rows)
    taps = _taps(x_padded[:, strides[0] * r0 : strides[0] * (r1 - 1) + kh], kh, kw, strides, r1 - r0, out_w)
    patches = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)
    yield r0, r1, patches.reshape(-1, kh * kw * cin)


def _filter_gradient(x_padded, dy, kh, kw, strides):
  """im2col(x_padded)ᵀ · dy as a (kh·kw·cin, cout) float32 matrix, a band of output rows at a time.

  Up to ``_MAX_UNROLLED_BANDS`` bands are written out one after another; more, which large batches
  need, become a ``fori_loop`` so that the program and its compile time do not grow with the batch.
  """
  n, _, _, cin = x_padded.shape
  _, out_h, out_w, cout = dy.shape
  row_bytes = n * out_w * kh * kw * cin * jnp.dtype(x_padded.dtype).itemsize
  if -(-out_h // max(1, _CHUNK_BYTES // row_bytes)) <= _MAX_UNROLLED_BANDS:
    return sum(
      _matmul(patches, dy[:, r0:r1].reshape(-1, cout), (0, 0))
      for r0, r1, patches in _patch_bands(x_padded, kh, kw, strides, out_h, out_w)
    )
  rows = max(r for r in range(1, out_h + 1) if out_h % r == 0 and (r == 1 or r * row_bytes <= _CHUNK_BYTES))
  sh = strides[0]
  in_rows = sh * (rows - 1) + kh

  def band(b, total):
    r0 = b * rows
    x_band = lax.dynamic_slice_in_dim(x_padded, sh * r0, in_rows, axis=1)
    taps = _taps(x_band, kh, kw, strides, rows, out_w)
    patches = (taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)).reshape(-1, kh * kw * cin)
    return total + _matmul(patches, lax.dynamic_slice_in_dim(dy, r0, rows, axis=1).reshape(-1, cout), (0, 0))

  return lax.fori_loop(0, out_h // rows, band, jnp.zeros((kh * kw * cin, cout), jnp.float32))


def _col2im(parts, kw, strides, padded_hw):
  """Σ over taps (i, j) of parts[t] (n, out_h, out_w, c) placed at x_padded[:, i + s·h, j + s·w]."""
  (sh, sw), (hp, wp) = strides, padded_hw
  total = None
  for t, part in enumerate(parts):
    i, j = divmod(t, kw)
    _, out_h, out_w, _ = part.shape
    spread = lax.pad(
      part,
      jnp.zeros((), part.dtype),
      ((0, 0, 0), (i, hp - i - sh * (out_h - 1) - 1, sh - 1), (j, wp - j - sw * (out_w - 1) - 1, sw - 1), (0, 0, 0)),
    )
    total = spread if total is None else total + spread
  return total


def _conv_bwd(strides, pads, xla_dw, residuals, dy):
  x, w = residuals
  kh, kw, cin, cout = w.shape
  n, h, wd, _ = x.shape
  _, out_h, out_w, _ = dy.shape
  sh, sw = strides
  (ph0, ph1), (pw0, pw1) = pads
  dy2 = dy.reshape(-1, cout)

  # Filter gradient: im2col(x)ᵀ · dy, a band of output rows at a time (see _CHUNK_BYTES).
  if kh == kw == 1 and sh == sw == 1 and not any(pads[0] + pads[1]):
    dw = _matmul(x.reshape(-1, cin), dy2, (0, 0))
  elif xla_dw:
    dw = jax.linear_transpose(lambda w: xla_conv(x, w, strides, pads), w)(dy)[0]  # XLA's filter gradient
  else:
    dw = _filter_gradient(jnp.pad(x, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0))), dy, kh, kw, strides)
  dw = dw.reshape(kh, kw, cin, cout).astype(w.dtype)

  # Input gradient: dy · wᵀ, then each tap's share added back at its offset (col2im).
  # z and the col2im sum stay float32 whatever the compute dtype; dx is rounded once at the end.
  z = _matmul(dy2, w.reshape(kh * kw * cin, cout), (1, 1)).reshape(n, out_h, out_w, kh * kw, cin)
  dx_padded = _col2im([z[:, :, :, t, :] for t in range(kh * kw)], kw, strides, (h + ph0 + ph1, wd + pw0 + pw1))
  dx = dx_padded[:, ph0 : ph0 + h, pw0 : pw0 + wd, :].astype(x.dtype)
  return dx, dw


_conv.defvjp(_conv_fwd, _conv_bwd)


def square_max_pool(x: jax.Array, window: int, stride: int, padding: int) -> jax.Array:
  """A square max pool (-inf padding) whose gradient is k² fused compares and one col2im.

  Each output's gradient goes to the first maximum of its window in row-major order, as
  ``select_and_scatter`` and torch's ``max_pool2d`` route it.
  """
  return _max_pool(x, window, stride, padding)


def _reduce_max(x, window, stride, padding):
  return lax.reduce_window(
    x,
    -jnp.inf,
    lax.max,
    (1, window, window, 1),
    (1, stride, stride, 1),
    ((0, 0), (padding, padding), (padding, padding), (0, 0)),
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, stride, padding):
  return _reduce_max(x, window, stride, padding)


def _max_pool_fwd(x, window, stride, padding):
  y = _reduce_max(x, window, stride, padding)
  return y, (x, y)


def _max_pool_bwd(window, stride, padding, residuals, dy):
  x, y = residuals
  _, h, wd, _ = x.shape
  _, out_h, out_w, _ = y.shape
  p = padding
  x_padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=-jnp.inf)
  zero = jnp.zeros((), dy.dtype)
  claimed = jnp.zeros(y.shape, bool)
  routed = []
  for tap in _taps(x_padded, window, window, (stride, stride), out_h, out_w):
    hit = (tap == y) & ~claimed
    claimed = claimed | hit
    routed.append(jnp.where(hit, dy, zero))
  dx_padded = _col2im(routed, window, (stride, stride), (h + 2 * p, wd + 2 * p))
  return (dx_padded[:, p : p + h, p : p + wd, :],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


# --------------------------------------------------------------------------------------------------
# The layers networks take (flax's signatures, parameters and names).


class ConvTranspose(nn.ConvTranspose):
  """``nn.ConvTranspose`` computed by :func:`conv_transpose` in the plain case (2-D, no kernel
  dilation, no mask, ``transpose_kernel=False``, padding other than "CIRCULAR"), flax's otherwise."""

  convolution: Callable = None  # the stride-1 convolution inside (default :func:`conv`)

  @nn.compact
  def __call__(self, inputs):
    plain = (
      inputs.ndim == 4
      and self.mask is None
      and not self.transpose_kernel
      and self.padding != "CIRCULAR"
      and self.kernel_dilation in (None, 1, (1, 1))
      and self.preferred_element_type is None
    )
    if not plain:
      return super().__call__(inputs)
    as_pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
    kernel_size, strides = as_pair(self.kernel_size), as_pair(self.strides or 1)
    kernel = self.param("kernel", self.kernel_init, (*kernel_size, inputs.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
    inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    padding = nn.linear.canonicalize_padding(self.padding, 2)
    y = conv_transpose(inputs, kernel, strides, padding, self.convolution)
    return y if bias is None else y + bias


def max_pool(
  inputs: jax.Array, window_shape: Sequence[int], strides: Sequence[int] | None = None, padding="VALID"
) -> jax.Array:
  """``flax.linen.max_pool`` whose gradient is :func:`square_max_pool`'s for square, symmetric 2-D cases."""
  strides = tuple(strides or (1,) * len(window_shape))
  if inputs.ndim == 4 and len(set(window_shape)) == 1 and len(set(strides)) == 1:
    pads = (
      lax.padtype_to_pads(inputs.shape[1:3], window_shape, strides, padding)
      if isinstance(padding, str)
      else tuple(tuple(p) for p in padding)
    )
    if len({p for pair in pads for p in pair}) == 1:
      return square_max_pool(inputs, window_shape[0], strides[0], pads[0][0])
  return nn.max_pool(inputs, tuple(window_shape), strides, padding)


@functools.cache
def layers(xla_filter_gradients: bool = True) -> Layers:
  """The fast layers (one cached instance, so models built from them compare equal and share compiles).

  ``xla_filter_gradients=False`` keeps products for every filter gradient (`takes_xla_filter_gradient`).
  """
  fn = conv if xla_filter_gradients else functools.partial(conv, xla_filter_gradients=False)
  return Layers(
    conv=functools.partial(nn.Conv, conv_general_dilated=fn),
    conv_transpose=functools.partial(ConvTranspose, convolution=fn),
    max_pool=max_pool,
  )


def setup(enabled: bool = True) -> Layers:
  """What an entry point calls first thing: on a CPU host, the allocator settings and :func:`layers`.

  Returns flax's :class:`Layers` on an accelerator host (decided without starting a JAX backend,
  which must wait for ``jax.distributed.initialize``) or with ``enabled=False`` (``--nocpu_fast_path``).
  """
  if not enabled or accelerator_host():
    return Layers()
  configure_host_allocator()
  return layers()


# --------------------------------------------------------------------------------------------------
# Host allocator: XLA-CPU allocates a step's buffers when it starts and frees them when it ends; with
# glibc's defaults each large block is mmapped afresh and page-faulted every step
# (`python -m bench.bench_ide_step --host_allocator default` measures it).

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
# The variables through which a user sets malloc up before start-up; any of them wins.
_USER_MALLOC_VARIABLES = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_TRIM_THRESHOLD_")
# JAX's accelerator plugins: with one installed (and JAX_PLATFORMS not limited to cpu) the host is an
# accelerator host, where these settings were never measured and are not applied.
_ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "jax_rocm7_plugin", "libtpu")


@functools.cache
def _glibc() -> ctypes.CDLL | None:
  """The C library when it is glibc (has ``mallopt``), else None (macOS, musl, Windows)."""
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.gnu_get_libc_version  # noqa: B018  (only glibc has it)
    libc.mallopt  # noqa: B018
  except (OSError, AttributeError):
    return None
  libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  libc.mallopt.restype = ctypes.c_int
  return libc


def _user_sets_malloc() -> bool:
  return any(name in os.environ for name in _USER_MALLOC_VARIABLES) or "glibc.malloc." in os.environ.get(
    "GLIBC_TUNABLES", ""
  )


def accelerator_host() -> bool:
  """Whether JAX will run on an accelerator, decided without starting a backend (which would be too late)."""
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms:
    return any(p.strip() not in ("", "cpu") for p in platforms.split(","))
  return any(importlib.util.find_spec(name) is not None for name in _ACCELERATOR_PLUGINS)


def configure_host_allocator(top_pad_mb: int = 256) -> bool:
  """Keeps the memory of XLA's CPU steps mapped from one step to the next (glibc only); returns whether it applied.

  Three settings, all needed: glibc's ``M_MMAP_MAX`` 0 (a large block would otherwise be mapped
  afresh each step), ``M_TRIM_THRESHOLD`` -1 (the freed top of the heap is not given back) and
  ``M_TOP_PAD``; and JAX's asynchronous CPU dispatch off, because a worker thread's arena maps large
  blocks whatever the settings. Costs: resident memory stays at its peak. Must run before JAX
  creates its CPU client. Nothing changes (returns False) without glibc, when the user's environment
  sets malloc (``MALLOC_*_`` variables, ``glibc.malloc`` tunables), or on an accelerator host.

  Args:
    top_pad_mb: how much more memory than asked for the heap takes each time it grows, MiB.
  """
  if top_pad_mb < 0:
    raise ValueError(f"top_pad_mb must be >= 0, got {top_pad_mb}")
  if _user_sets_malloc() or accelerator_host():
    return False
  libc = _glibc()
  if libc is None:
    return False
  settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1), (_M_TOP_PAD, top_pad_mb << 20))
  applied = all([libc.mallopt(param, value) == 1 for param, value in settings])  # noqa: C419  (set every one)
  if applied:
    jax.config.update("jax_cpu_enable_async_dispatch", False)
  return applied
