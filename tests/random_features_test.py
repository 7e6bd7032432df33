"""The random-features score model (paper eq. 7)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.errors import ConfigError
from jaxdiff.models import random_features as rfm


def test_score_matches_its_definition():
  kw, ka, kx = jax.random.split(jax.random.key(0), 3)
  p, d = 12, 5
  w = rfm.init_weights(kw, p, d)
  a = jax.random.normal(ka, (d, p))
  x = jax.random.normal(kx, (7, d))
  got = rfm.score(a, w, x)
  want = np.stack([np.asarray(a) @ np.tanh(np.asarray(w) @ xi / math.sqrt(d)) / math.sqrt(p)
                   for xi in np.asarray(x)])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_flax_module_trains_a_only_from_zero():
  model = rfm.RandomFeaturesScore(num_features=64, activation="erf")
  x = jax.random.normal(jax.random.key(1), (3, 16))
  variables = model.init(jax.random.key(2), x)
  assert set(variables["params"]) == {"A"}
  assert variables["params"]["A"].shape == (16, 64)
  assert not np.any(variables["params"]["A"])
  np.testing.assert_array_equal(model.apply(variables, x), np.zeros((3, 16)))
  w = variables["constants"]["W"]
  assert w.shape == (64, 16)
  assert abs(float(jnp.std(w)) - 1.0) < 0.1  # N(0, 1) entries, not N(0, 1/d)
  a = jnp.ones((16, 64))
  out = model.apply({"params": {"A": a}, "constants": {"W": w}}, x)
  np.testing.assert_allclose(out, rfm.score(a, w, x, "erf"), rtol=1e-6)
  grads = jax.grad(lambda prm: jnp.sum(model.apply({"params": prm, **{"constants": {"W": w}}},
                                                     x)**2))({"A": a})
  assert set(grads) == {"A"}


def test_unknown_activation_is_a_config_error():
  with pytest.raises(ConfigError, match="rf.activation"):
    rfm.get_activation("swish")
