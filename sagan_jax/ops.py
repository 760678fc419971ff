"""Convolutions, transposed ones too, and max pooling with gradients XLA-CPU runs fast: matrix products.

XLA's CPU backend runs a forward convolution through Eigen's tuned kernels, but it lowers the two
gradients to convolutions of unusual shapes: the filter gradient is a convolution whose "window"
is the whole feature map, and the input gradient of a strided convolution dilates its input. Those
take a slow path. Written as matrix products, ResNet-50's gradients at batch 8, 256×128 take 0.68
instead of 1.70 s on the 2-core development CPU (``bench/bench_convs.py`` times every convolution
both ways):

* filter gradient: ``dw = patches(x)ᵀ · dy``, with ``patches`` the k·k shifted, strided views of
  the padded input laid side by side (im2col);
* input gradient: ``z = dy · wᵀ`` gives, for every output position, its contribution to each of the
  k·k input positions it read; adding those back at their offsets (col2im, one ``lax.pad`` with
  interior padding per tap, which XLA fuses into one loop) gives ``dx``. A stride-1 1×1
  convolution needs neither step: both gradients are single products.

On a CPU with AVX-512, XLA-CPU's own filter gradient of a stride-1 k×k convolution is the faster
one up to batch 32, and :func:`conv` takes it there unless told not to (``xla_filter_gradients``;
``gradient_impl="auto"`` on CPU; ResNet-50's step at batch 8 2–10 % faster on a Zen 4); at larger
batches, and on AVX2 at any batch, it is up to several times slower than the product, which those
keep, as does ``gradient_impl="matmul"`` everywhere.

The forward pass of a 1×1 convolution is the same single product (XLA-CPU's own is up to 2.3×
slower); the others are ``lax.conv_general_dilated`` unchanged. Parameters are exactly those of
``flax.linen.Conv``: :func:`conv` has ``lax.conv_general_dilated``'s signature and is given to
``nn.Conv(conv_general_dilated=...)``, as :func:`conv_function` does for the ResNet and SA-GAN's
networks. Supported: NHWC input, HWIO kernel, explicit or "VALID"/"SAME" padding, no dilation, one
feature group; anything else raises. Products accumulate in float32 whatever the compute dtype.

A layer whose ``k·k·cin`` exceeds ``_MAX_EXPANSION·cout`` keeps XLA's gradients: there ``dy·wᵀ``
contracts over few channels into a buffer many times the size of ``dy`` (and im2col's patches are
as large), while XLA's own convolutions of such narrow layers are fast. The layers concerned are
narrow-output ones such as SA-GAN's 7×7 generator ends and its critics' one-channel output layer;
none of ResNet-50's (its largest ratio is 9, a 3×3 convolution with ``cin = cout``).

:func:`conv_transpose` computes ``lax.conv_transpose`` without dilating its input, one stride-1
convolution and a depth-to-space, so that neither it nor its gradients take that slow path.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")
# The im2col patches of the filter gradient are built a band of output rows at a time, each band at
# most this size, so the patches' memory stays bounded at any batch. Bands split output rows, never
# the batch, which the mesh shards. They were first a speed fix: with glibc's old settings the step's
# memory was freshly mapped every step and whole patches cost more to fault in than the product
# (ResNet-50's first 3×3 filter gradient at batch 8: 46 ms whole, 19 ms in bands). With
# runtime.configure_host_allocator as it is now, whole patches are no slower (`bench/bench_convs.py
# --band_mib 1024` against the default; BENCHMARKS.md §3).
_CHUNK_BYTES = 8 << 20
_MAX_UNROLLED_BANDS = 8
# Convolutions with k·k·cin > _MAX_EXPANSION·cout keep XLA's gradients. Per layer at batch 8
# (forward + input gradient + filter gradient, ms, XLA's → products, two runs; `python
# bench/bench_convs.py --net sagan_synthetic`): SA-GAN's 7×7 generator output layer, 16→3 on 70×38
# (ratio 261), 9.4 → 34.2 and 14.8 → 70.3; its 7×7 input layer, 4→16 (12.3), 8.1 → 13.4 and
# 10.1 → 7.8 (a wash); the critic's 4×4 128→1 output (2048), 0.6 → 0.9 and 0.4 → 0.5.
# ResNet-50's layers (largest ratio 9) and SA-GAN's other layers were as fast or faster with
# products (`--net resnet50`, `--net sagan_synthetic`).
_MAX_EXPANSION = 9


def _cpu_flags(cpuinfo: str) -> frozenset[str]:
  """The feature flags of the first processor listed in a Linux ``/proc/cpuinfo`` text."""
  for line in cpuinfo.splitlines():
    key, _, value = line.partition(":")
    if key.strip() == "flags":
      return frozenset(value.split())
  return frozenset()


def _host_has_avx512() -> bool:
  """Whether this host's CPU has AVX-512 (Linux; False where ``/proc/cpuinfo`` cannot be read)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
      return "avx512f" in _cpu_flags(f.read())
  except OSError:
    return False


# Filter gradients of stride-1 k×k convolutions (k > 1) are XLA's own where the CPU has AVX-512,
# up to a batch of _XLA_FILTER_GRADIENT_MAX_BATCH, and products elsewhere. XLA-CPU's
# filter-gradient convolution is the faster one on a Zen 4 at small batches, and up to several
# times slower on AVX2 and at larger batches; strided layers are mixed, and taking them too gained
# nothing in the step. Per layer: `python bench/bench_convs.py --batch N` (its "dw xla" and
# "dw ours" columns); the step: `python bench/bench_ide_step.py --gradient_impl auto,matmul`
# ("matmul" keeps the products). BENCHMARKS.md §3 has both. XLA's CPU backend only: elsewhere
# "auto" takes XLA's gradients for every layer.
_XLA_STRIDE1_FILTER_GRADIENTS = _host_has_avx512()
_XLA_FILTER_GRADIENT_MAX_BATCH = 32


def takes_xla_filter_gradient(batch: int, kernel: Sequence[int], strides: Sequence[int]) -> bool:
  """Whether :func:`conv` (``xla_filter_gradients=True``) takes XLA's filter gradient for this layer here."""
  return (_XLA_STRIDE1_FILTER_GRADIENTS and tuple(strides) == (1, 1) and kernel[0] * kernel[1] > 1
          and batch <= _XLA_FILTER_GRADIENT_MAX_BATCH and jax.default_backend() == "cpu")

GRADIENT_IMPLS = ("auto", "matmul", "xla")


def resolve_gradient_impl(gradient_impl: str) -> str:
  """``"matmul"`` or ``"xla"``; ``"auto"`` is the first on CPU and the second elsewhere."""
  if gradient_impl not in GRADIENT_IMPLS:
    raise ValueError(f"gradient_impl must be one of {GRADIENT_IMPLS}, got {gradient_impl!r}")
  if gradient_impl == "auto":
    return "matmul" if jax.default_backend() == "cpu" else "xla"
  return gradient_impl


def conv_function(gradient_impl: str):
  """The convolution a network runs: the same function, its gradients as products or as XLA emits them.

  ``"matmul"`` is :func:`conv` with products for every gradient (on an AVX2 CPU the ResNet-50 step
  takes 1.41 s at batch 8 against 2.62 s with XLA's gradient convolutions,
  ``bench/bench_ide_step.py``; an SA-GAN iteration of the synthetic config 0.46 against 0.65 s with
  :func:`conv_transpose` in the generators, ``bench/bench_sagan_step.py``); ``"xla"`` is
  ``lax.conv_general_dilated``; ``"auto"`` is :func:`conv` as it stands on CPU (products, and XLA's
  stride-1 filter gradients where `takes_xla_filter_gradient` says so) and ``"xla"`` elsewhere,
  where cuDNN and the TPU compiler have fast convolution gradients of their own.
  """
  if resolve_gradient_impl(gradient_impl) != "matmul":
    return lax.conv_general_dilated
  return conv if gradient_impl == "auto" else functools.partial(conv, xla_filter_gradients=False)



def conv_transpose(x: jax.Array, w: jax.Array, strides: Sequence[int], padding, convolution=None) -> jax.Array:
  """``lax.conv_transpose`` (NHWC, HWIO, ``transpose_kernel=False``) without dilating its input.

  XLA computes a transposed convolution as a convolution of the input dilated by the stride, and
  on CPU its gradients take the slow path of dilated convolutions (module docstring): 12 ms for
  forward and backward of SA-GAN's 3×3 stride-2 upsampling layers at the synthetic scale, which
  read mostly inserted zeros. Each output phase ``(r_h, r_w)`` (the output pixels ``s·i + r``)
  reads only a fixed subset of the kernel's taps at fixed offsets of the undilated input, so the
  whole layer is one stride-1 convolution of the input with ``s_h·s_w·cout`` output channels
  (unused taps zero) followed by a depth-to-space: 2–3 ms for the same layers
  (``bench/bench_convs.py --net sagan_synthetic``). Same function and kernel layout; ``padding``
  as ``lax.conv_transpose``'s ("SAME", "VALID" or explicit pairs of the dilated convolution).
  ``convolution`` runs the stride-1 convolution (default :func:`conv`, whose gradients are products).
  """
  convolution = convolution or conv
  if x.ndim != 4 or w.ndim != 4 or x.shape[-1] != w.shape[2]:
    raise ValueError("conv_transpose needs NHWC input and an HWIO kernel with matching channels, "
                     f"got {x.shape} and {w.shape}")
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


def conv(x: jax.Array, w: jax.Array, window_strides: Sequence[int], padding, lhs_dilation=None,
         rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1, precision=None,
         preferred_element_type=None, *, xla_filter_gradients: bool = True) -> jax.Array:
  """``lax.conv_general_dilated`` for NHWC/HWIO, with matrix-product gradients where they pay (see above).

  ``xla_filter_gradients=False`` keeps the products for the filter gradient on an AVX-512 host too
  (see `takes_xla_filter_gradient`).
  """
  del precision  # float32 products are exact-rounded on CPU; the forward keeps XLA's default
  if dimension_numbers is not None and not _is_nhwc(dimension_numbers):
    raise ValueError(f"sagan_jax.ops.conv supports NHWC input and HWIO kernels only, got {dimension_numbers}")
  if any(d != 1 for d in (lhs_dilation or (1, 1))) or any(d != 1 for d in (rhs_dilation or (1, 1))):
    raise ValueError("sagan_jax.ops.conv does not support dilation; use lax.conv_general_dilated")
  if feature_group_count != 1 or preferred_element_type is not None:
    raise ValueError("sagan_jax.ops.conv supports one feature group and the input dtype only")
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
  """1×1 convolutions as one product (2.2× faster than XLA-CPU's over ResNet-50's), the rest XLA's.

  im2col products were no faster than XLA's own forward for the 3×3 and 7×7 ones.
  """
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
  bands = [_matmul(patches, w2).astype(x.dtype).reshape(n, r1 - r0, out_w, cout)
           for r0, r1, patches in _patch_bands(x_padded, kh, kw, strides, out_h, out_w)]
  return bands[0] if len(bands) == 1 else jnp.concatenate(bands, axis=1)


def _taps(x_padded, kh, kw, strides, out_h, out_w):
  """The k·k strided views x_padded[:, i + s·h, j + s·w, :] in (i, j) order."""
  sh, sw = strides
  n, _, _, c = x_padded.shape
  return [
      lax.slice(x_padded, (0, i, j, 0), (n, i + sh * (out_h - 1) + 1, j + sw * (out_w - 1) + 1, c), (1, sh, sw, 1))
      for i in range(kh) for j in range(kw)
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
    taps = _taps(x_padded[:, strides[0] * r0:strides[0] * (r1 - 1) + kh], kh, kw, strides, r1 - r0, out_w)
    patches = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)
    yield r0, r1, patches.reshape(-1, kh * kw * cin)


def _filter_gradient(x_padded, dy, kh, kw, strides):
  """im2col(x_padded)ᵀ · dy as a (kh·kw·cin, cout) float32 matrix, a band of output rows at a time.

  Up to ``_MAX_UNROLLED_BANDS`` bands are written out one after another (XLA schedules them
  freely); more, which large batches need, become a ``fori_loop`` over equal bands so that the
  program and its compile time do not grow with the batch (at batch 128 the unrolled bands made
  ResNet-50's step four times as many products, and XLA's compile ran for over five minutes).
  """
  n, _, _, cin = x_padded.shape
  _, out_h, out_w, cout = dy.shape
  row_bytes = n * out_w * kh * kw * cin * jnp.dtype(x_padded.dtype).itemsize
  if -(-out_h // max(1, _CHUNK_BYTES // row_bytes)) <= _MAX_UNROLLED_BANDS:
    return sum(_matmul(patches, dy[:, r0:r1].reshape(-1, cout), (0, 0))
               for r0, r1, patches in _patch_bands(x_padded, kh, kw, strides, out_h, out_w))
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
    spread = lax.pad(part, jnp.zeros((), part.dtype), ((0, 0, 0), (i, hp - i - sh * (out_h - 1) - 1, sh - 1),
                                                       (j, wp - j - sw * (out_w - 1) - 1, sw - 1), (0, 0, 0)))
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
  dx = dx_padded[:, ph0:ph0 + h, pw0:pw0 + wd, :].astype(x.dtype)
  return dx, dw


_conv.defvjp(_conv_fwd, _conv_bwd)


def max_pool(x: jax.Array, window: int, stride: int, padding: int) -> jax.Array:
  """``flax.linen.max_pool`` (square window, -inf padding) with a gradient of fused compares and adds.

  XLA-CPU's own gradient (``select_and_scatter``) takes 78 ms for ResNet-50's stem pool at batch 8,
  256×128, this one 15 ms (``bench/bench_convs.py``, last line). It routes each output's gradient to the first maximum of its window in row-major
  order, as ``select_and_scatter`` and torch's ``max_pool2d`` do, with k² compares and one col2im.
  """
  return _max_pool(x, window, stride, padding)


def _reduce_max(x, window, stride, padding):
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1),
                           ((0, 0), (padding, padding), (padding, padding), (0, 0)))


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
  return (dx_padded[:, p:p + h, p:p + wd, :],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)
