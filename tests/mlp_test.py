"""The GMM residual MLP of paper SM B: parameter count, time encoding, init, and its
outputs against an independent NumPy forward pass of the same parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from jaxdiff import models
from jaxdiff.models import mlp


@pytest.mark.parametrize("d,width", [(8, 128), (64, 128), (8, 64), (8, 256)])
def test_parameter_count_formula(d, width):
  net = mlp.ResidualMLP(width=width)
  shapes = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), jnp.zeros((2, d)),
                                           jnp.zeros((2,), jnp.int32)))
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  assert count == mlp.num_params(d, width) == width * (2 * d + 13) + d + 6 * width**2
  if (d, width) == (8, 128):
    assert count == 102_024  # paper SM B
  if (d, width) == (64, 128):
    assert count == 116_416  # 8x8 digits


def test_time_encoding_columns():
  t = jnp.array([0, 3, 999])
  emb = np.asarray(mlp.sinusoidal_encoding(t, 8, min_freq=1e-4))
  freqs = 1e-4 ** (2 * np.arange(4) / 8)
  np.testing.assert_allclose(emb[:, 0::2], np.cos(np.outer([0, 3, 999], freqs)), atol=1e-4)
  np.testing.assert_allclose(emb[:, 1::2], np.sin(np.outer([0, 3, 999], freqs)), atol=1e-4)


def test_init_like_pytorch_and_image_inputs():
  net = mlp.ResidualMLP(width=64)
  x = jnp.ones((3, 8, 8, 1))
  params = net.init(jax.random.PRNGKey(1), x, jnp.zeros((3,), jnp.int32))["params"]
  k = np.asarray(params["input"]["kernel"])
  bound = 1 / np.sqrt(64)  # fan_in of the first layer: 64 pixels
  assert np.abs(k).max() <= bound and np.abs(k).max() > 0.9 * bound
  out = net.apply({"params": params}, x, jnp.array([1, 2, 3]))
  assert out.shape == x.shape
  # The time index changes the output (the encoding reaches every block).
  other = net.apply({"params": params}, x, jnp.array([500, 2, 3]))
  assert not np.allclose(out[0], other[0]) and np.allclose(out[1:], other[1:])


def _numpy_forward(params, x, t, width, num_blocks=3, min_freq=1e-4, labels=None):
  """The module docstring's equations in float64 NumPy, from the parameter dict alone:
  h = x W_in + b_in; per block h = LN(h + fc2(GELU(fc1(h + emb(t) [+ e(y)])))); out."""
  from math import erf, sqrt
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  dense = lambda name, v: v @ p[name]["kernel"] + p[name]["bias"]
  gelu = np.vectorize(lambda z: 0.5 * z * (1 + erf(z / sqrt(2))))  # exact (erf) GELU
  h = x.reshape(x.shape[0], -1).astype(np.float64)
  freqs = min_freq ** (2 * np.arange(width // 2) / width)
  angles = np.asarray(t, np.float64)[:, None] * freqs
  emb = np.empty((len(t), width))
  emb[:, 0::2], emb[:, 1::2] = np.cos(angles), np.sin(angles)
  if labels is not None:
    emb = emb + p["label_embedding"]["embedding"][labels]
  h = dense("input", h)
  for b in range(num_blocks):
    z = dense(f"block{b}_fc2", gelu(dense(f"block{b}_fc1", h + emb)))
    u = h + z
    mu, var = u.mean(-1, keepdims=True), u.var(-1, keepdims=True)
    norm = p[f"block{b}_norm"]
    h = (u - mu) / np.sqrt(var + 1e-5) * norm["scale"] + norm["bias"]
  return dense("output", h).reshape(x.shape)


@pytest.mark.parametrize("shape,width,blocks", [((5, 8), 32, 3), ((4, 8, 8, 1), 16, 2)])
@pytest.mark.slow
def test_output_equals_an_independent_forward_pass(shape, width, blocks):
  net = mlp.ResidualMLP(width=width, num_blocks=blocks)
  x = jax.random.normal(jax.random.PRNGKey(2), shape)
  t = jnp.arange(shape[0]) * 97 + 1
  params = net.init(jax.random.PRNGKey(3), x, t)["params"]
  # Non-trivial LayerNorm parameters, so that scale and bias are checked too.
  params = jax.tree_util.tree_map_with_path(
      lambda path, a: a + 0.1 * (1 + jnp.arange(a.size).reshape(a.shape) % 3)
      if "norm" in jax.tree_util.keystr(path) else a, params)
  got = np.asarray(net.apply({"params": params}, x, t))
  want = _numpy_forward(params, np.asarray(x), np.asarray(t), width, blocks)
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
  assert np.abs(want).max() > 0.1  # not a trivially small output


def test_conditional_output_adds_the_label_embedding():
  net = mlp.ResidualMLP(width=16, num_classes=3)
  x = jax.random.normal(jax.random.PRNGKey(4), (4, 6))
  t, y = jnp.array([1, 10, 100, 999]), jnp.array([0, 1, 2, 3])  # 3 = the null class
  params = net.init(jax.random.PRNGKey(5), x, t, y)["params"]
  got = np.asarray(net.apply({"params": params}, x, t, y))
  want = _numpy_forward(params, np.asarray(x), np.asarray(t), 16, labels=np.asarray(y))
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
  # No label means the null class.
  null = np.asarray(net.apply({"params": params}, x, t))
  np.testing.assert_allclose(null[3], got[3], rtol=1e-6, atol=1e-6)
  assert not np.allclose(null[0], got[0], atol=1e-3)


def test_get_model_dispatch():
  cfg = base.get_config().model
  with cfg.unlocked():
    cfg.name = "mlp"
    cfg.width = 32
    cfg.num_blocks = 2
  net = models.get_model(cfg, 1000)
  assert isinstance(net, mlp.ResidualMLP)
  assert (net.width, net.num_blocks, net.num_classes) == (32, 2, 0)
  # The configured network computes what a hand-built one with the same settings does.
  x, t = jnp.ones((2, 8)), jnp.array([3, 700])
  params = net.init(jax.random.PRNGKey(0), x, t)["params"]
  np.testing.assert_allclose(
      net.apply({"params": params}, x, t),
      _numpy_forward(params, np.asarray(x), np.asarray(t), 32, 2), rtol=2e-4, atol=2e-5)
