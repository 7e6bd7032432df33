"""Tests of jaxdiff.models.layers: PyTorch-default init, time table, GroupNorm,
self-attention, and the equality of every models-axis convolution path."""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.models import layers


def _init(module, x):
  return jax.jit(module.init)(jax.random.key(0), x)["params"]


def test_dense_and_conv_init_are_pytorch_default():
  # kaiming_uniform(a=sqrt 5): U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias the same.
  p = _init(layers.Conv(16, kernel_size=3), jnp.zeros((1, 4, 4, 8)))
  bound = 1 / math.sqrt(8 * 9)
  k = np.asarray(p["kernel"])
  assert k.shape == (3, 3, 8, 16)
  assert np.abs(k).max() <= bound and np.abs(k).max() > 0.97 * bound
  # Uniform variance bound^2 / 3 (1152 draws: relative s.e. of the variance ~ 3%).
  np.testing.assert_allclose(k.var(), bound**2 / 3, rtol=0.15)
  assert np.abs(np.asarray(p["bias"])).max() <= bound
  assert np.asarray(p["bias"]).std() > 0  # drawn, not zero (PyTorch's default)

  p = _init(layers.Dense(64), jnp.zeros((1, 32)))
  bound = 1 / math.sqrt(32)
  k = np.asarray(p["kernel"])
  assert k.shape == (32, 64)
  assert np.abs(k).max() <= bound and np.abs(k).max() > 0.97 * bound
  assert np.abs(np.asarray(p["bias"])).max() <= bound


def test_sinusoidal_table_closed_form():
  t_steps, dim = 1000, 16
  table = layers.sinusoidal_table(t_steps, dim)
  assert table.shape == (t_steps, dim) and table.dtype == np.float32
  half = dim // 2
  f = np.exp(-np.arange(half) * np.log(10000.0) / (half - 1))
  args = np.arange(t_steps)[:, None] * f[None, :]
  ref = np.concatenate([np.sin(args), np.cos(args)], axis=1)
  # float32 arguments up to 999 carry ~6e-5 rounding, as in the reference.
  np.testing.assert_allclose(table, ref, atol=2e-4)
  np.testing.assert_array_equal(table[0], [0] * half + [1] * half)
  # The lowest frequency is exactly 1e-4 (f_{h-1} = 10000^{-1}).
  np.testing.assert_allclose(table[999, half - 1], np.sin(999e-4), atol=1e-6)


def test_group_norm_matches_numpy():
  x = np.random.default_rng(0).standard_normal((2, 4, 4, 16)).astype(np.float32) * 3 + 1
  gn = layers.GroupNorm(num_groups=4)
  p = _init(gn, x)
  np.testing.assert_array_equal(p["scale"], np.ones(16))
  np.testing.assert_array_equal(p["bias"], np.zeros(16))
  p = {"scale": np.linspace(0.5, 2, 16, dtype=np.float32),
       "bias": np.linspace(-1, 1, 16, dtype=np.float32)}
  y = jax.jit(gn.apply)({"params": p}, x)
  xg = x.reshape(2, 4, 4, 4, 4).astype(np.float64)
  mean = xg.mean(axis=(1, 2, 4), keepdims=True)
  var = xg.var(axis=(1, 2, 4), keepdims=True)
  ref = ((xg - mean) / np.sqrt(var + 1e-5)).reshape(x.shape) * p["scale"] + p["bias"]
  np.testing.assert_allclose(y, ref, atol=1e-5)


def test_self_attention_matches_numpy_multihead():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, 3, 3, 8)).astype(np.float32)
  att = layers.SelfAttention(num_heads=2, num_groups=2)
  p = _init(att, x)
  # PyTorch MHA init: in-projection xavier-uniform over [3C, C], biases zero.
  bound = math.sqrt(6 / (8 + 24))
  assert np.abs(p["qkv"]["kernel"]).max() <= bound
  np.testing.assert_array_equal(p["qkv"]["bias"], 0)
  np.testing.assert_array_equal(p["out"]["bias"], 0)
  p = jax.tree.map(lambda a: a + 0.1 * rng.standard_normal(a.shape).astype(np.float32), p)
  y = np.asarray(jax.jit(att.apply)({"params": p}, x))

  h = np.asarray(jax.jit(layers.GroupNorm(2).apply)({"params": p["norm"]}, x))
  h = h.reshape(2, 9, 8)
  qkv = h @ p["qkv"]["kernel"] + p["qkv"]["bias"]
  out = np.zeros((2, 9, 8))
  for head in range(2):
    sl = slice(4 * head, 4 * head + 4)
    q, k, v = qkv[..., sl], qkv[..., 8:][..., sl], qkv[..., 16:][..., sl]
    logits = q @ np.swapaxes(k, 1, 2) / 2.0
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    out[..., sl] = w @ v
  ref = x + (out @ p["out"]["kernel"] + p["out"]["bias"]).reshape(x.shape)
  np.testing.assert_allclose(y, ref, atol=1e-5)


# --------------------------------------------------------------------- models-axis convs

K = 3


def _conv_loss(kernel, x, mode, ksize, stride):
  pad = ksize // 2
  y = layers.conv2d(x, kernel, strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                    batching=mode)
  return jnp.sum(jnp.sin(y) * jnp.arange(y.size).reshape(y.shape) / y.size)


def _data(ksize, side=7, cin=4, cout=5):
  kx, kw = jax.random.split(jax.random.key(ksize))
  x = jax.random.normal(kx, (K, 2, side, side, cin))
  w = jax.random.normal(kw, (K, ksize, ksize, cin, cout)) / ksize
  return x, w


@pytest.mark.parametrize("ksize,stride", [(3, 1), (3, 2), (1, 1)])
def test_conv_paths_equal_per_model_convolutions(ksize, stride):
  """Forward and gradients of every path under vmap equal K per-model convolutions."""
  x, w = _data(ksize)
  pad = ((ksize // 2,) * 2,) * 2
  grad = jax.grad(_conv_loss, argnums=(0, 1))

  @jax.jit
  def reference(w, x):  # K separate one-model convolutions and gradients
    ys = [layers.conv2d(x[i], w[i], strides=(stride, stride), padding=pad)
          for i in range(K)]
    gs = [grad(w[i], x[i], "native", ksize, stride) for i in range(K)]
    return jnp.stack(ys), jnp.stack([g[0] for g in gs]), jnp.stack([g[1] for g in gs])

  @functools.partial(jax.jit, static_argnums=2)
  def lifted(w, x, mode):
    y = jax.vmap(lambda w_, x_: layers.conv2d(
        x_, w_, strides=(stride, stride), padding=pad, batching=mode))(w, x)
    # vmap(grad): how a trainer lifts a one-model step.
    gw, gx = jax.vmap(lambda w_, x_: grad(w_, x_, mode, ksize, stride))(w, x)
    # grad(sum of vmap): the other order.
    total = lambda w_, x_: jnp.sum(jax.vmap(
        lambda a, b: _conv_loss(a, b, mode, ksize, stride))(w_, x_))
    gw2, gx2 = jax.grad(total, argnums=(0, 1))(w, x)
    return y, gw, gx, gw2, gx2

  ref_y, ref_gw, ref_gx = reference(w, x)
  for mode in layers.CONV_BATCHING:
    y, gw, gx, gw2, gx2 = lifted(w, x, mode)
    for got, ref in [(y, ref_y), (gw, ref_gw), (gx, ref_gx), (gw2, ref_gw), (gx2, ref_gx)]:
      np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5, err_msg=mode)


def test_unroll_with_shared_kernel_and_nested_vmap():
  x, w = _data(3)
  grad = jax.grad(_conv_loss, argnums=(0, 1))
  # Kernel shared by the models (only x batched): folded into the batch.
  gw, gx = jax.vmap(grad, in_axes=(None, 0, None, None, None))(w[0], x, "unroll", 3, 1)
  for i in range(K):
    rw, rx = grad(w[0], x[i], "native", 3, 1)
    np.testing.assert_allclose(gw[i], rw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx[i], rx, rtol=1e-5, atol=1e-5)
  # Two nested vmaps (models x an inner axis), both with batched kernels.
  xs = jnp.stack([x, 2 * x])  # [2, K, ...]
  ws = jnp.stack([w, -w])
  y = jax.vmap(jax.vmap(lambda w_, x_: layers.conv2d(
      x_, w_, padding=((1, 1), (1, 1)), batching="unroll")))(ws, xs)
  ref = jax.vmap(jax.vmap(lambda w_, x_: layers.conv2d(
      x_, w_, padding=((1, 1), (1, 1)))))(ws, xs)
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_fast_paths_emit_no_grouped_convolution():
  """The point of unroll / im2col: vmap must not become a grouped convolution."""
  x, w = _data(3)
  grad = jax.grad(_conv_loss, argnums=(0, 1))
  groups = {}
  for mode in layers.CONV_BATCHING:
    hlo = jax.jit(jax.vmap(grad, in_axes=(0, 0, None, None, None)),
                  static_argnums=(2, 3, 4)).lower(w, x, mode, 3, 2).as_text()
    counts = re.findall(r"(?:feature|batch)_group_count = (\d+)", hlo)
    groups[mode] = max([int(c) for c in counts] or [1])
  assert groups["native"] == K  # the slow path really is grouped here
  assert groups["unroll"] == 1 and groups["im2col"] == 1


def test_conv_module_rejects_unknown_batching():
  with pytest.raises(ValueError, match="conv batching"):
    layers.conv2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)),
                  padding=((1, 1), (1, 1)), batching="fold")
