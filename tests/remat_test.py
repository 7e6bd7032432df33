"""Rematerialisation of the U-Net's blocks (model.remat) and bfloat16 activations:
the same losses and gradients, less saved for the backward pass.

Small shapes (W = 8, two levels of one ResBlock, 8x8 images, batch 4), dropout on, so that the
recomputed dropout masks are checked too.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import plan
from jaxdiff.errors import ConfigError
from jaxdiff.models.unet import UNet

SMALL = dict(width=8, channel_mult=(1, 2), attention=(False, True), num_res_blocks=1,
             num_steps=50)


@pytest.fixture(scope="module")
def setup():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((4, 8, 8, 1)), jnp.float32)
  t = jnp.asarray([1, 10, 30, 49], jnp.int32)
  # Jitted (one compile, not one per operation) and with threefry_partitionable off, as
  # unet_test._init: the same distribution, compiled several times faster on CPU.
  with jax.threefry_partitionable(False):
    params = jax.jit(UNet(**SMALL).init)({"params": jax.random.PRNGKey(0)}, x, t)["params"]
  return x, t, params


@pytest.fixture(scope="module")
def compiled(setup):
  """remat -> the compiled (loss, grads) of the U-Net's training loss, the dropout key an
  argument: each remat option is compiled once for the whole module (the gradient test
  calls it with two keys, the FLOP test reads its cost analysis)."""
  x, t, params = setup
  programs = {}

  def get(remat):
    if remat not in programs:
      model = UNet(**SMALL, remat=remat)

      def loss(p, key):
        out = model.apply({"params": p}, x, t, train=True, rngs={"dropout": key})
        return jnp.mean(jnp.square(out - x))
      programs[remat] = jax.jit(jax.value_and_grad(loss)).lower(
          params, jax.random.PRNGKey(0)).compile()
    return programs[remat]

  return get


@pytest.mark.parametrize("remat", ["convs", "full"])
@pytest.mark.slow
def test_remat_gives_the_same_loss_and_gradients(setup, compiled, remat):
  _, _, params = setup
  key = jax.random.PRNGKey(3)
  ref_loss, ref_grads = compiled("none")(params, key)
  loss, grads = compiled(remat)(params, key)
  # Parameter names are unchanged by nn.remat (interop's mapping still applies).
  assert jax.tree.structure(grads) == jax.tree.structure(ref_grads)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
  for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6)
  # Dropout is on: a different key changes the loss, so equal losses mean equal masks.
  other, _ = compiled(remat)(params, jax.random.PRNGKey(4))
  assert abs(float(other) - float(loss)) > 1e-6


@pytest.mark.slow
def test_saved_activations_shrink_with_remat_and_bfloat16():
  saved = {(r, d): plan.saved_activation_bytes(UNet(**SMALL, remat=r, dtype=d), (8, 8, 1), 16)
           for r in plan.REMAT_OPTIONS for d in plan.DTYPE_OPTIONS}
  for d in plan.DTYPE_OPTIONS:
    assert saved["none", d] > 2 * saved["convs", d] > 2 * saved["full", d] > 0
  for r in plan.REMAT_OPTIONS:
    assert saved[r, "bfloat16"] < 0.8 * saved[r, "float32"]
  # Linear in the batch: activations, not parameters, dominate what is saved.
  double = plan.saved_activation_bytes(UNet(**SMALL), (8, 8, 1), 32)
  assert 1.8 * saved["none", "float32"] < double < 2.0 * saved["none", "float32"]


@pytest.mark.slow
def test_full_remat_recomputes_in_the_compiled_step(compiled):
  # XLA:CPU merges the recomputation back into the forward pass (its temporaries do
  # not drop: plan.memory_options), but the FLOPs show the recomputed forward pass.
  def flops(remat):
    cost = compiled(remat).cost_analysis()
    return (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"]
  assert flops("full") > 1.15 * flops("none")


@pytest.mark.gpu
def test_remat_lowers_xla_temporaries_on_an_accelerator():
  """XLA:GPU/TPU keep jax.checkpoint's barriers until after scheduling: the compiled
  step's temporaries drop (run by benchmarks/device_check.sh)."""
  x = jnp.zeros((64, 32, 32, 1))
  t = jnp.zeros((64,), jnp.int32)
  kw = dict(width=16, num_steps=1000)
  params = UNet(**kw).init({"params": jax.random.PRNGKey(0)}, x[:1], t[:1])["params"]
  def temps(**extra):
    m = UNet(**kw, **extra)
    loss = lambda p: jnp.sum(m.apply({"params": p}, x, t, train=True,
                                     rngs={"dropout": jax.random.PRNGKey(0)}))
    return jax.jit(jax.grad(loss)).lower(params).compile().memory_analysis().temp_size_in_bytes
  none = temps()
  assert temps(remat="convs") < 0.6 * none
  assert temps(remat="full") < 0.4 * none
  assert temps(dtype="bfloat16") < 0.9 * none


def test_unknown_remat_is_a_config_error():
  with pytest.raises(ConfigError, match="model.remat"):
    UNet(**SMALL, remat="sometimes").validate()
  assert dataclasses.replace(UNet(**SMALL), remat="full").remat == "full"
