"""Laying runs out on a device: `lift` (unroll / vmap) and `map_groups` (G runs at a time)
compute the same per-run function; grouping bounds the memory of a program."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import models_axis


def one_run(per_model, shared):
  """A per-run function with a tree in and out and a shared argument."""
  w, b = per_model["w"], per_model["b"]
  h = jnp.tanh(shared @ w + b)
  return {"y": h.sum(0), "norm": jnp.sum(h * h)}


def stacked(num):
  keys = jax.random.split(jax.random.PRNGKey(0), num)
  return {"w": jax.vmap(lambda k: jax.random.normal(k, (6, 4)))(keys),
          "b": jnp.arange(num * 4, dtype=jnp.float32).reshape(num, 4) / 10}


@pytest.mark.parametrize("strategy", ["unroll", "vmap"])
@pytest.mark.parametrize("group", [0, 1, 2, 3, 5, 8])
def test_lift_in_groups_equals_one_run_at_a_time(strategy, group):
  num, x = 5, jnp.linspace(-1, 1, 18).reshape(3, 6)
  per_model = stacked(num)
  out = jax.jit(models_axis.lift(one_run, strategy, group))(per_model, x)
  for m in range(num):
    want = one_run(jax.tree.map(lambda a: a[m], per_model), x)
    for k in want:
      np.testing.assert_allclose(out[k][m], want[k], rtol=1e-6, atol=1e-6)


def test_map_groups_runs_groups_in_order_with_a_remainder():
  seen = []
  out = models_axis.map_groups(lambda t: (seen.append(t.shape[0]), t * 2)[1], jnp.arange(7.0), 3)
  np.testing.assert_array_equal(out, 2 * np.arange(7.0))
  assert seen == [3, 1]  # one traced group of 3 (lax.map over 2 of them), then the rest


@pytest.mark.parametrize("strategy", ["unroll", "vmap"])
def test_groups_bound_the_temporaries(strategy):
  """XLA's memory analysis: a backward pass keeps each run's activations ([512, 256] x 3);
  8 runs computed 2 at a time need a fraction of the temporaries of all 8 at once."""
  def loss(w, x):
    return jnp.sum(jnp.tanh(jnp.tanh(x @ w) @ w) ** 2)

  grad_one = lambda per_model, x: jax.grad(loss)(per_model["w"], x)
  per_model, x = {"w": jnp.ones((8, 256, 256))}, jnp.ones((512, 256))

  def temp(group):
    lifted = jax.jit(models_axis.lift(grad_one, strategy, group))
    return lifted.lower(per_model, x).compile().memory_analysis().temp_size_in_bytes

  activations = 512 * 256 * 4  # bytes of one run's [512, 256] activation
  all_at_once, grouped = temp(0), temp(2)
  assert all_at_once >= 8 * 2 * activations, all_at_once
  assert grouped < all_at_once / 2, (grouped, all_at_once)
