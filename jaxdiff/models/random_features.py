"""The random-features score model of the paper's Sect. 3 (eq. 7).

  s_A(x) = A sigma(W x / sqrt(d)) / sqrt(p),   W in R^{p x d} frozen N(0, 1),
                                               A in R^{d x p} trained from A(0) = 0.

Two equivalent interfaces: pure functions on arrays (`features`, `score`), which the
random-features study uses inside its jitted training loop, and a Flax module
(`RandomFeaturesScore`) whose frozen W lives in the non-trainable "constants" collection,
so `params` holds A only.

Usage:
  model = RandomFeaturesScore(num_features=p)
  variables = model.init(key, x)          # {"params": {"A": 0}, "constants": {"W": ...}}
  s = model.apply(variables, x)           # [..., d]
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import jax.scipy.special

from jaxdiff.errors import ConfigError

# The random-features theory (Gaussian equivalence, paper 2.1) assumes E sigma(z) = 0,
# i.e. an odd activation; relu is offered for simulations only.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "erf": jax.scipy.special.erf,
    "relu": jax.nn.relu,
}
ODD_ACTIVATIONS = ("tanh", "erf")


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """The activation function called `name` (one of ACTIVATIONS)."""
  if name not in ACTIVATIONS:
    raise ConfigError("rf.activation", name, f"one of {sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]


def init_weights(key: jax.Array, num_features: int, dim: int, dtype=jnp.float32) -> jax.Array:
  """The frozen first layer W [p, d] with i.i.d. N(0, 1) entries (paper eq. 7)."""
  return jax.random.normal(key, (num_features, dim), dtype)


def features(w: jax.Array, x: jax.Array, activation: str = "tanh") -> jax.Array:
  """sigma(W x / sqrt(d)) for a batch x [..., d] -> [..., p]."""
  d = w.shape[1]
  return get_activation(activation)(x @ w.T / jnp.sqrt(jnp.asarray(d, x.dtype)))


def score(a: jax.Array, w: jax.Array, x: jax.Array, activation: str = "tanh") -> jax.Array:
  """s_A(x) = A sigma(W x / sqrt d) / sqrt p for x [..., d] -> [..., d] (paper eq. 7)."""
  p = w.shape[0]
  return features(w, x, activation) @ a.T / jnp.sqrt(jnp.asarray(p, x.dtype))


class RandomFeaturesScore(nn.Module):
  """Flax form of eq. 7: trainable A (zeros at init), frozen Gaussian W.

  Attributes:
    num_features: p, the number of random features.
    activation: name of sigma in ACTIVATIONS (tanh, the paper's choice, by default).
  """

  num_features: int
  activation: str = "tanh"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d = x.shape[-1]
    w = self.variable(
        "constants", "W",
        lambda: init_weights(self.make_rng("params"), self.num_features, d, x.dtype)).value
    a = self.param("A", nn.initializers.zeros, (d, self.num_features), x.dtype)
    return score(a, w, x, self.activation)
