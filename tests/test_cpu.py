"""sagan_jax.cpu: convolution, transposed convolution and max-pool gradients equal to XLA's; its layers in the
networks give flax's outputs and gradients; the host allocator settings."""

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from sagan_jax import cpu
from sagan_jax.models.layers import Layers

# (height, width, cin, cout, kernel, stride, padding): ResNet-50's kinds, odd sizes that leave
# input rows unread by a strided window, and asymmetric padding.
CASES = [
  (9, 7, 3, 4, 1, 1, ((0, 0), (0, 0))),
  (9, 7, 3, 4, 1, 2, ((0, 0), (0, 0))),
  (8, 6, 3, 5, 3, 1, ((1, 1), (1, 1))),
  (9, 7, 2, 3, 3, 2, ((1, 1), (1, 1))),
  (11, 10, 3, 4, 7, 2, ((3, 3), (3, 3))),
  (8, 7, 2, 3, 3, 2, ((0, 2), (1, 0))),
]


def _grads(fn, x, w, dy, strides, padding):
  y, vjp = jax.vjp(lambda x, w: fn(x, w, strides, padding), x, w)
  return (y, *vjp(dy))


def matmul_gradients(x, w, strides, padding, xla_dw=False):
  """The product-gradient convolution itself, whatever layer shapes ``cpu.conv`` would hand to XLA.

  ``xla_dw``: with XLA's filter gradient, as ``cpu.conv`` takes it for stride-1 layers on AVX-512 hosts.
  """
  return cpu._conv(x, w, tuple(strides), tuple(tuple(p) for p in padding), xla_dw)


# A stride-1 1×1 filter gradient is one product, with no patches to band.
BANDED = [
  (*case, bands)
  for case in CASES
  for bands in ("whole", "unrolled", "loop", "loop_of_two_rows")
  if bands == "whole" or case[4:6] != (1, 1)
]


@pytest.mark.parametrize("h,w_,cin,cout,k,s,padding,bands", BANDED)
def test_forward_and_gradients_match_xla(h, w_, cin, cout, k, s, padding, bands, monkeypatch):
  """Also with the filter gradient's patches built in bands: one row each, written out or in a loop."""
  rng = np.random.default_rng(k * 10 + s)
  x = jnp.asarray(rng.standard_normal((2, h, w_, cin)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((k, k, cin, cout)), jnp.float32)
  y_ref = cpu.xla_conv(x, w, (s, s), padding)
  row_bytes = 2 * y_ref.shape[2] * k * k * cin * 4
  if bands != "whole":
    monkeypatch.setattr(cpu, "_CHUNK_BYTES", 2 * row_bytes if bands == "loop_of_two_rows" else 1)
    monkeypatch.setattr(cpu, "_MAX_UNROLLED_BANDS", 10**6 if bands == "unrolled" else 0)
  dy = jnp.asarray(rng.standard_normal(y_ref.shape), jnp.float32)
  ours = _grads(matmul_gradients, x, w, dy, (s, s), padding)
  ref = _grads(cpu.xla_conv, x, w, dy, (s, s), padding)
  for name, a, b in zip(("y", "dx", "dw"), ours, ref):
    assert a.shape == b.shape, name
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()), err_msg=name)


def test_gradient_agrees_with_a_numpy_brute_force():
  """Independent of XLA: dx and dw from the definition y[n,h,w,o] = Σ x[n, s·h+i−p, s·w+j−p, c]·w[i,j,c,o]."""
  rng = np.random.default_rng(3)
  x = rng.standard_normal((1, 5, 4, 2))
  w = rng.standard_normal((3, 3, 2, 2))
  s, p = 2, 1
  out_h, out_w = (5 + 2 * p - 3) // s + 1, (4 + 2 * p - 3) // s + 1
  dy = rng.standard_normal((1, out_h, out_w, 2))
  dx, dw = np.zeros_like(x), np.zeros_like(w)
  for a in range(out_h):
    for b in range(out_w):
      for i in range(3):
        for j in range(3):
          r, c = s * a + i - p, s * b + j - p
          if 0 <= r < 5 and 0 <= c < 4:
            dw[i, j] += np.outer(x[0, r, c], dy[0, a, b])
            dx[0, r, c] += w[i, j] @ dy[0, a, b]
  _, got_dx, got_dw = _grads(
    matmul_gradients,
    jnp.asarray(x, jnp.float32),
    jnp.asarray(w, jnp.float32),
    jnp.asarray(dy, jnp.float32),
    (s, s),
    ((p, p), (p, p)),
  )
  np.testing.assert_allclose(got_dx, dx, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got_dw, dw, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
  "host_rule,max_batch,asked", [(False, 32, True), (True, 32, True), (True, 1, True), (True, 32, False)]
)
@pytest.mark.parametrize("k,s", [(3, 1), (7, 1), (3, 2), (1, 1)])
def test_stride1_filter_gradients_follow_the_host_rule(k, s, host_rule, max_batch, asked, monkeypatch):
  """Every setting gives XLA's gradients; XLA's filter gradient runs only for stride-1 k×k layers on a
  host with the rule, up to its batch limit (batch 2 here), and when ``conv`` is not told otherwise.

  The gradient program's convolution count says which ran: the forward one, plus XLA's filter
  gradient where the rule takes it (the input gradient is a product and col2im either way).
  """
  monkeypatch.setattr(cpu, "_host_has_avx512", lambda: host_rule)
  monkeypatch.setattr(cpu, "_XLA_FILTER_GRADIENT_MAX_BATCH", max_batch)
  conv = functools.partial(cpu.conv, xla_filter_gradients=asked)
  rng = np.random.default_rng(k * 10 + s)
  x = jnp.asarray(rng.standard_normal((2, 9, 8, 4)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((k, k, 4, 24)), jnp.float32)  # k·k·cin ≤ 9·cout: products
  padding = ((k // 2, k // 2),) * 2
  y = cpu.xla_conv(x, w, (s, s), padding)
  dy = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
  for a, b in zip(_grads(conv, x, w, dy, (s, s), padding), _grads(cpu.xla_conv, x, w, dy, (s, s), padding)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))
  jaxpr = str(jax.make_jaxpr(lambda x, w: _grads(conv, x, w, dy, (s, s), padding))(x, w))
  forward = 0 if k == 1 else 1  # a 1×1 forward is a product
  takes_xla = host_rule and asked and s == 1 and k > 1 and max_batch >= 2
  assert jaxpr.count("conv_general_dilated[") == forward + takes_xla


def test_layers_keep_the_products_or_take_xla_filter_gradients_on_avx512(monkeypatch):
  monkeypatch.setattr(cpu, "_host_has_avx512", lambda: True)
  cpu.layers.cache_clear()
  x = jnp.ones((2, 6, 5, 3))
  params = nn.Conv(4, (3, 3)).init(jax.random.key(0), x)
  count = lambda layers: str(
    jax.make_jaxpr(
      jax.grad(lambda p, x: jnp.sum(layers.conv(4, (3, 3), padding=((1, 1), (1, 1))).apply(p, x)), argnums=(0, 1))
    )(params, x)
  ).count("conv_general_dilated[")
  # flax: forward, input and filter gradients; products: the forward; AVX-512: the forward and XLA's filter gradient
  assert (count(Layers()), count(cpu.layers(xla_filter_gradients=False)), count(cpu.layers())) == (3, 1, 2)
  cpu.layers.cache_clear()


def test_cpu_flags_are_read_from_the_first_processor():
  cpuinfo = (
    "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma avx512f avx512bw\n\n"
    "processor\t: 1\nflags\t\t: fpu\n"
  )
  assert cpu._cpu_flags(cpuinfo) == {"fpu", "sse2", "avx2", "fma", "avx512f", "avx512bw"}
  assert "avx512f" not in cpu._cpu_flags("processor\t: 0\nflags\t: fpu sse2 avx2 fma avx512_bf16\n")
  assert cpu._cpu_flags("Processor\t: ARMv8\nFeatures\t: fp asimd\n") == frozenset()


@pytest.mark.parametrize(
  "cin,cout,k,products",
  [
    (3, 4, 1, True),
    (4, 4, 3, True),  # k·k·cin/cout = 0.75, and 9: the limit
    (3, 16, 7, False),
    (16, 3, 7, False),
    (8, 1, 4, False),  # 9.2, 261, 128: XLA's gradients
  ],
)
def test_narrow_output_layers_keep_xla_gradients(cin, cout, k, products):
  """``conv`` uses the product gradients up to _MAX_EXPANSION and XLA's above; both give XLA's numbers."""
  rng = np.random.default_rng(cin * 100 + cout)
  x = jnp.asarray(rng.standard_normal((2, 12, 10, cin)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((k, k, cin, cout)), jnp.float32)
  padding = ((k // 2, (k - 1) // 2),) * 2
  jaxpr = str(jax.make_jaxpr(lambda x, w: cpu.conv(x, w, (1, 1), padding))(x, w))
  assert ("custom_vjp_call" in jaxpr) == products
  y = cpu.xla_conv(x, w, (1, 1), padding)
  dy = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
  for a, b in zip(_grads(cpu.conv, x, w, dy, (1, 1), padding), _grads(cpu.xla_conv, x, w, dy, (1, 1), padding)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_string_padding_is_lax_padding(padding):
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.standard_normal((2, 9, 8, 4)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((3, 3, 4, 6)), jnp.float32)
  y = cpu.xla_conv(x, w, (2, 2), padding)
  assert y.shape == ((2, 4, 3, 6) if padding == "VALID" else (2, 5, 4, 6))
  dy = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
  for a, b in zip(_grads(cpu.conv, x, w, dy, (2, 2), padding), _grads(cpu.xla_conv, x, w, dy, (2, 2), padding)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))


@pytest.mark.parametrize(
  "cin,cout,k,s,xla_dw", [(4, 8, 4, 2, False), (6, 6, 3, 1, False), (6, 6, 3, 1, True), (3, 5, 1, 2, False)]
)
def test_gradient_of_the_input_gradient_matches_xla(cin, cout, k, s, xla_dw):
  """WGAN-GP differentiates a critic's input gradient again: d/dw ‖∂(Σ r·conv(x, w))/∂x‖² as XLA's."""
  rng = np.random.default_rng(k * 10 + s)
  x = jnp.asarray(rng.standard_normal((2, 10, 8, cin)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((k, k, cin, cout)), jnp.float32)
  padding = ((k // 2, (k - 1) // 2),) * 2
  r = jnp.asarray(rng.standard_normal(cpu.xla_conv(x, w, (s, s), padding).shape), jnp.float32)

  def penalty(fn, x, w):
    dx = jax.grad(lambda x: jnp.sum(r * jnp.tanh(fn(x, w, (s, s), padding))))(x)
    return jnp.sum(dx**2)

  ours_fn = functools.partial(matmul_gradients, xla_dw=xla_dw)
  ours = jax.grad(lambda x, w: penalty(ours_fn, x, w), argnums=(0, 1))(x, w)
  ref = jax.grad(lambda x, w: penalty(cpu.xla_conv, x, w), argnums=(0, 1))(x, w)
  for a, b in zip(ours, ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))


@pytest.mark.parametrize("s,xla_dw", [(2, False), (1, False), (1, True)])
def test_bfloat16_gradients_stay_within_its_rounding_of_float32(s, xla_dw):
  """Products and XLA's stride-1 filter gradient (the AVX-512 rule) alike."""
  conv = functools.partial(matmul_gradients, xla_dw=xla_dw)
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((4, 16, 8, 16)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((3, 3, 16, 16)) * 0.1, jnp.float32)
  pads = ((1, 1), (1, 1))
  y = cpu.xla_conv(x, w, (s, s), pads)
  dy = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
  _, dx32, dw32 = _grads(conv, x, w, dy, (s, s), pads)
  _, dx16, dw16 = _grads(conv, x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), dy.astype(jnp.bfloat16), (s, s), pads)
  assert dx16.dtype == dw16.dtype == jnp.bfloat16
  # Inputs rounded to 8 bits of mantissa (relative 2^-9 each), accumulated in float32: the error is a
  # few 2^-9 of the typical entry, far below what accumulating the filter gradient's n·h·w terms (128
  # at stride 2, 512 at stride 1) in bfloat16 would give.
  for a, b in ((dx16, dx32), (dw16, dw32)):
    rel = float(jnp.linalg.norm(a.astype(jnp.float32) - b) / jnp.linalg.norm(b))
    assert rel < 4 * 2.0**-9, rel


def test_flax_conv_with_it_has_the_same_parameters_and_output():
  x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 9, 7, 3)), jnp.float32)
  make = lambda **kw: nn.Conv(4, (3, 3), (2, 2), padding=((1, 1), (1, 1)), use_bias=False, **kw)
  params = make().init(jax.random.key(0), x)
  ours = make(conv_general_dilated=cpu.conv)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x)) == jax.tree.map(jnp.shape, params)
  np.testing.assert_allclose(ours.apply(params, x), make().apply(params, x), rtol=1e-6, atol=1e-6)
  g_ours = jax.grad(lambda p: jnp.sum(ours.apply(p, x) ** 2))(params)
  g_ref = jax.grad(lambda p: jnp.sum(make().apply(p, x) ** 2))(params)
  np.testing.assert_allclose(g_ours["params"]["kernel"], g_ref["params"]["kernel"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
  "kwargs",
  [
    {"rhs_dilation": (2, 2)},
    {"feature_group_count": 3},
    {"dimension_numbers": ("NCHW", "OIHW", "NCHW")},
  ],
)
def test_what_it_does_not_cover_is_lax_itself(kwargs):
  rng = np.random.default_rng(9)
  x = jnp.asarray(rng.standard_normal((1, 3, 6, 6) if "dimension_numbers" in kwargs else (1, 6, 6, 3)), jnp.float32)
  w = jnp.asarray(
    rng.standard_normal(
      (3, 1 if "feature_group_count" in kwargs else 3, 3, 3)
      if "dimension_numbers" in kwargs
      else (3, 3, 1 if "feature_group_count" in kwargs else 3, 3)
    ),
    jnp.float32,
  )
  if "dimension_numbers" not in kwargs:
    kwargs = {**kwargs, "dimension_numbers": ("NHWC", "HWIO", "NHWC")}
  args = (x, w, (1, 1), ((1, 1), (1, 1)))
  np.testing.assert_array_equal(cpu.conv(*args, **kwargs), lax.conv_general_dilated(*args, **kwargs))
  jaxpr = str(jax.make_jaxpr(jax.grad(lambda w: jnp.sum(cpu.conv(x, w, *args[2:], **kwargs))))(w))
  assert "custom_vjp" not in jaxpr


def _lax_conv_transpose(x, w, strides, padding):
  return lax.conv_transpose(x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize(
  "h,w_,k,strides,padding",
  [
    (5, 4, 3, (2, 2), "SAME"),  # the generators' upsampling layers
    (5, 4, 3, (2, 2), "VALID"),
    (6, 3, 4, (2, 2), "SAME"),  # even kernel: phases with equal tap counts
    (5, 5, 3, (1, 1), "SAME"),  # stride 1: an ordinary convolution with a flipped reading
    (4, 5, 5, (3, 2), "SAME"),  # unequal strides, kernel wider than the stride
    (4, 5, 2, (3, 3), "VALID"),  # stride above the kernel: phases with no tap at all (zeros)
    (4, 4, 3, (2, 2), ((1, 2), (0, 1))),  # explicit padding of the dilated input
    (4, 4, 3, (2, 2), ((4, 0), (-1, 3))),  # padding beyond the kernel, and cropping
  ],
)
def test_conv_transpose_matches_lax_forward_and_gradients(h, w_, k, strides, padding):
  rng = np.random.default_rng(h * 100 + k)
  x = jnp.asarray(rng.standard_normal((2, h, w_, 3)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((k, k, 3, 4)), jnp.float32)
  y_ref = _lax_conv_transpose(x, w, strides, padding)
  dy = jnp.asarray(rng.standard_normal(y_ref.shape), jnp.float32)
  for convolution in (cpu.conv, lax.conv_general_dilated):
    ours = _grads(lambda x, w, s, p: cpu.conv_transpose(x, w, s, p, convolution), x, w, dy, strides, padding)
    ref = _grads(_lax_conv_transpose, x, w, dy, strides, padding)
    for name, a, b in zip(("y", "dx", "dw"), ours, ref):
      assert a.shape == b.shape, name
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()), err_msg=name)
  # No dilated convolution anywhere in the program, gradients included (XLA-CPU's slow path).
  dilated = lambda fn: (
    re.search(
      r"lhs_dilation=\((?!1, 1\))", str(jax.make_jaxpr(lambda x, w: _grads(fn, x, w, dy, strides, padding))(x, w))
    )
    is not None
  )
  assert dilated(_lax_conv_transpose) == (strides != (1, 1)) and not dilated(cpu.conv_transpose)


def test_conv_transpose_agrees_with_a_numpy_brute_force():
  """Independent of lax: y[s·i + t − p] += x[i]·w[t] (per axis), with the dilated input's padding p."""
  rng = np.random.default_rng(5)
  x, w = rng.standard_normal((1, 3, 2, 2)), rng.standard_normal((3, 3, 2, 2))
  s, (lo, hi) = 2, (2, 1)  # "SAME" for k = 3, s = 2
  out_h, out_w = (3 - 1) * s + 1 + lo + hi - 3 + 1, (2 - 1) * s + 1 + lo + hi - 3 + 1
  y = np.zeros((1, out_h, out_w, 2))
  for i in range(3):
    for j in range(2):
      for a in range(3):
        for b in range(3):
          # Dilated input position s·i + lo is read by output o through tap t when o + t = s·i + lo.
          r, c = s * i + lo - a, s * j + lo - b
          if 0 <= r < out_h and 0 <= c < out_w:
            y[0, r, c] += x[0, i, j] @ w[a, b]
  got = cpu.conv_transpose(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32), (s, s), "SAME")
  np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-5)


def test_conv_transpose_refuses_what_it_cannot_compute():
  x = jnp.zeros((1, 4, 4, 3))
  with pytest.raises(ValueError, match="padding must be"):
    cpu.conv_transpose(x, jnp.zeros((3, 3, 3, 2)), (2, 2), "CIRCULAR")
  with pytest.raises(ValueError, match="matching channels"):
    cpu.conv_transpose(x, jnp.zeros((3, 3, 2, 2)), (2, 2), "SAME")
  with pytest.raises(ValueError, match="give no output"):
    cpu.conv_transpose(jnp.zeros((1, 1, 1, 3)), jnp.zeros((3, 3, 3, 2)), (1, 1), ((0, 0), (0, 0)))


@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_gradient_matches_select_and_scatter(ties):
  """Same routing as XLA's select_and_scatter, ties included (values drawn from {0, 1, 2})."""
  rng = np.random.default_rng(5)
  shape = (2, 9, 8, 3)
  x = rng.integers(0, 3, shape) if ties else rng.standard_normal(shape)
  x = jnp.asarray(x, jnp.float32)
  ref_fn = lambda x: nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
  ours_fn = lambda x: cpu.square_max_pool(x, 3, 2, 1)
  y_ref, vjp_ref = jax.vjp(ref_fn, x)
  y, vjp = jax.vjp(ours_fn, x)
  np.testing.assert_array_equal(y, y_ref)
  dy = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
  np.testing.assert_allclose(vjp(dy)[0], vjp_ref(dy)[0], rtol=1e-6, atol=1e-6)
  # Each output's gradient lands on exactly one input: the totals agree.
  np.testing.assert_allclose(float(vjp(dy)[0].sum()), float(dy.sum()), rtol=1e-5)


def test_resnet_gradients_are_the_same_with_either_layers():
  from sagan_jax.reid.resnet import IDE

  rng = np.random.default_rng(6)
  x = jnp.asarray(rng.uniform(-1, 1, (4, 32, 16, 3)), jnp.float32)
  labels = jnp.asarray([0, 1, 2, 1])
  nets = {
    "flax": IDE(num_classes=3, stage_sizes=(1, 1, 1, 1), width=8),
    "cpu": IDE(
      num_classes=3, stage_sizes=(1, 1, 1, 1), width=8, conv=cpu.layers().conv, max_pool=cpu.layers().max_pool
    ),
  }
  variables = nets["flax"].init(jax.random.key(0), x)
  assert jax.tree.structure(nets["cpu"].init(jax.random.key(0), x)) == jax.tree.structure(variables)

  def loss(params, which):
    (logits, _), _ = nets[which].apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
    return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(4), labels])

  grad = jax.jit(jax.grad(loss), static_argnums=1)
  ref, ours = grad(variables["params"], "flax"), grad(variables["params"], "cpu")
  ours, ref = jax.tree_util.tree_leaves_with_path(ours), jax.tree_util.tree_leaves_with_path(ref)
  assert [p for p, _ in ours] == [p for p, _ in ref] and len(ours) > 20
  # float32 rounding differs (other summation orders), amplified where batch norm's backward
  # subtracts nearly equal sums: agreement to 1e-4 of each leaf's largest entry.
  for (path, a), (_, b) in zip(ours, ref):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * float(jnp.abs(b).max()), err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize(
  "window,strides,padding,fast",
  [
    ((3, 3), (2, 2), ((1, 1), (1, 1)), True),  # the ResNet stem
    ((2, 2), (2, 2), "SAME", True),  # SiaNet's, on an even map: no padding
    ((2, 2), (2, 2), "VALID", True),
    ((3, 2), (2, 2), "VALID", False),  # not square: flax's
    ((3, 3), (2, 2), ((0, 1), (0, 1)), False),  # asymmetric padding: flax's
  ],
)
def test_max_pool_is_flax_max_pool(window, strides, padding, fast):
  rng = np.random.default_rng(11)
  x = jnp.asarray(rng.integers(0, 3, (2, 8, 6, 3)), jnp.float32)  # ties
  ref, vjp_ref = jax.vjp(lambda x: nn.max_pool(x, window, strides, padding), x)
  ours, vjp = jax.vjp(lambda x: cpu.max_pool(x, window, strides, padding), x)
  np.testing.assert_array_equal(ours, ref)
  dy = jnp.asarray(rng.standard_normal(ref.shape), jnp.float32)
  np.testing.assert_allclose(vjp(dy)[0], vjp_ref(dy)[0], rtol=1e-6, atol=1e-6)
  jaxpr = str(jax.make_jaxpr(jax.grad(lambda x: jnp.sum(cpu.max_pool(x, window, strides, padding))))(x))
  assert ("select_and_scatter" not in jaxpr) == fast


def test_setup_is_flax_when_turned_off_or_on_an_accelerator_host(monkeypatch):
  assert cpu.setup(enabled=False) == Layers()
  monkeypatch.setenv("JAX_PLATFORMS", "cuda")
  assert cpu.accelerator_host() and cpu.setup() == Layers()
  monkeypatch.setenv("JAX_PLATFORMS", "cpu,tpu")
  assert cpu.accelerator_host()
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  assert not cpu.accelerator_host()
  monkeypatch.setattr(cpu, "configure_host_allocator", lambda: False)  # the allocator belongs to fresh processes
  assert cpu.setup() is cpu.layers() and cpu.layers() != Layers()
