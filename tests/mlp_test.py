"""The GMM residual MLP of paper SM B: parameter count, time encoding, init, shapes."""

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


def test_get_model_dispatch():
  cfg = base.get_config().model
  with cfg.unlocked():
    cfg.name = "mlp"
    cfg.width = 32
  assert isinstance(models.get_model(cfg, 1000), mlp.ResidualMLP)
