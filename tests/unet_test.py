"""Tests of jaxdiff.models.unet: the paper's parameter counts, shapes, init, config
validation, dropout, and equality of the conv_batching paths over a models axis."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from jaxdiff.errors import ConfigError
from jaxdiff.models import unet as unet_lib
from jaxdiff.models.unet import UNet, make_unet

# A small U-Net for numeric tests: two levels, one block each, attention at the coarse one.
SMALL = dict(width=8, channel_mult=(1, 2), attention=(False, True), num_res_blocks=1,
             num_heads=2, num_steps=100)
# Smaller still (one level) where compile time dominates.
TINY = dict(width=8, channel_mult=(1,), attention=(True,), num_res_blocks=1, num_heads=2,
            num_steps=100)


def _shapes(model, side=8, channels=1):
  return jax.eval_shape(
      lambda k: model.init(k, jnp.zeros((1, side, side, channels)),
                           jnp.zeros((1,), jnp.int32)), jax.random.key(0))["params"]


def random_params(model, side=8, channels=1, seed=0):
  """Parameters of the model's shapes drawn with numpy (PyTorch-like scales).

  Numeric tests use these instead of `model.init`: under jit, XLA:CPU spends seconds
  compiling jax.random's threefry for every distinct parameter shape.
  """
  rng = np.random.default_rng(seed)

  def draw(path, s):
    name = path[-1].key
    if name == "kernel":
      bound = 1 / math.sqrt(math.prod(s.shape[:-1]))
      return rng.uniform(-bound, bound, s.shape).astype(np.float32)
    return (float(name == "scale") + rng.uniform(-0.3, 0.3, s.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, _shapes(model, side, channels))


def _init(model, side=8, channels=1, seed=0):
  # threefry_partitionable=False: the same distribution, compiled ~6x faster on CPU.
  with jax.threefry_partitionable(False):
    return jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, side, side, channels)),
                               jnp.zeros((1,), jnp.int32))["params"]


@pytest.mark.parametrize("width,count", [(8, 255_089), (16, 1_010_657), (32, 4_023_233),
                                         (48, 9_037_729), (64, 16_054_145)])
def test_parameter_counts_match_the_authors_model(width, count):
  # paper.md 1.2: trainable parameters of the authors' Unet.py (frozen table excluded).
  shapes = jax.eval_shape(
      lambda k: UNet(width=width).init(k, jnp.zeros((1, 32, 32, 1)),
                                       jnp.zeros((1,), jnp.int32)), jax.random.key(0))
  assert unet_lib.num_params(shapes["params"]) == count
  assert set(shapes) == {"params"}  # the sinusoidal table is not a variable


def test_layer_structure_of_the_paper():
  shapes = _shapes(UNet(width=8), side=16)
  # Encoder: 2 blocks per level, downsampling after levels 0 and 1 (8 layers).
  assert sorted(k for k in shapes if k.startswith("encoder")) == [
      f"encoder_{i}" for i in range(8)]
  assert "attention" not in shapes["encoder_0"] and "attention" in shapes["encoder_3"]
  assert set(shapes["encoder_2"]) == {"kernel", "bias"}  # stride-2 conv
  # Decoder: 3 blocks per level + 2 upsampling convs = 11 layers.
  assert len([k for k in shapes if k.startswith("decoder")]) == 11
  assert shapes["decoder_0"]["conv_1"]["kernel"].shape == (3, 3, 64, 32)  # 4W + 4W in
  assert shapes["middle_0"]["attention"]["qkv"]["kernel"].shape == (32, 96)
  assert "attention" not in shapes["middle_1"]
  assert shapes["final_conv"]["kernel"].shape == (3, 3, 8, 1)
  assert shapes["time_dense_0"]["kernel"].shape == (8, 32)
  assert shapes["encoder_0"]["time_dense"]["kernel"].shape == (32, 8)


@functools.partial(jax.jit, static_argnames=("model", "train"))
def _apply(model, params, x, t, train=False, key=None):
  rngs = {"dropout": key} if train else {}
  return model.apply({"params": params}, x, t, train=train, rngs=rngs)


@pytest.mark.slow
def test_output_shape_dtype_and_channels():
  for channels in (1, 3):
    model = UNet(**SMALL)
    params = random_params(model, channels=channels)
    assert params["final_conv"]["kernel"].shape[-1] == channels
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, channels))
    y = _apply(model, params, x, jnp.array([0, 99]))
    assert y.shape == x.shape and y.dtype == jnp.float32
    assert np.all(np.isfinite(y))
    # The time index matters: the same image at another time gives another output.
    y2 = _apply(model, params, x, jnp.array([7, 99]))
    assert not np.allclose(y[0], y2[0]) and np.allclose(y[1], y2[1])


@pytest.mark.slow
def test_pytorch_default_initialisation():
  model = UNet(**TINY)
  params = _init(model)
  conv = np.asarray(params["encoder_0"]["conv_2"]["kernel"])  # 3x3, 8 -> 8
  bound = 1 / math.sqrt(9 * 8)
  assert np.abs(conv).max() <= bound and np.abs(conv).max() > 0.95 * bound
  bias = np.asarray(params["encoder_0"]["conv_2"]["bias"])
  assert np.abs(bias).max() <= bound and bias.std() > 0
  dense = np.asarray(params["time_dense_1"]["kernel"])  # 32 -> 32
  assert 0.95 / math.sqrt(32) < np.abs(dense).max() <= 1 / math.sqrt(32)
  att = params["middle_0"]["attention"]
  assert np.abs(att["qkv"]["kernel"]).max() <= math.sqrt(6 / (8 + 24))
  assert np.abs(att["out"]["kernel"]).max() <= 1 / math.sqrt(8)
  np.testing.assert_array_equal(att["qkv"]["bias"], 0)
  np.testing.assert_array_equal(att["out"]["bias"], 0)
  np.testing.assert_array_equal(params["final_norm"]["scale"], 1)
  np.testing.assert_array_equal(params["final_norm"]["bias"], 0)
  # Different keys, different draws.
  other = _init(model, seed=1)
  assert not np.allclose(conv, other["encoder_0"]["conv_2"]["kernel"])


def test_dropout_only_in_training():
  model = UNet(**SMALL)
  params = random_params(model)
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
  t = jnp.array([0, 99])
  eval_out = _apply(model, params, x, t)
  tr1 = _apply(model, params, x, t, train=True, key=jax.random.key(0))
  tr2 = _apply(model, params, x, t, train=True, key=jax.random.key(1))
  assert not np.allclose(tr1, tr2) and not np.allclose(tr1, eval_out)
  np.testing.assert_array_equal(
      tr1, _apply(model, params, x, t, train=True, key=jax.random.key(0)))


def test_from_config_and_make_unet():
  cfg = base.get_config()
  cfg.model.width = 16
  model = UNet.from_config(cfg.model, cfg.diffusion.num_steps)
  assert model == make_unet(cfg.model, 1000)
  assert (model.width, model.channel_mult, model.attention) == (16, (1, 2, 4),
                                                                (False, True, True))
  assert (model.num_res_blocks, model.num_heads, model.num_groups, model.dropout) == (
      2, 4, 8, 0.1)
  assert model.num_steps == 1000 and model.conv_batching == "native"


@pytest.mark.parametrize("change,key", [
    (dict(width=12), "model.width"),
    (dict(width=16, num_groups=3), "model.width"),
    (dict(width=8, num_heads=3), "model.num_heads"),
    (dict(width=8, attention=(True, False)), "model.attention"),
    (dict(width=8, channel_mult=(1, 0, 2)), "model.channel_mult"),
    (dict(width=8, dropout=1.0), "model.dropout"),
    (dict(width=8, conv_batching="fold"), "model.conv_batching"),
    (dict(width=8, dtype="float16"), "model.dtype"),
    (dict(width=8, num_res_blocks=0), "model.num_res_blocks"),
])
def test_invalid_configs_raise_config_error(change, key):
  cfg = base.get_config()
  cfg.model.update(change)
  with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
    make_unet(cfg.model, 1000)


def test_image_size_must_fit_the_levels():
  model = UNet(width=8)  # 3 levels: sides divisible by 4
  with pytest.raises(ConfigError, match=r"data\.image_size"):
    jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, 10, 10, 1)),
                                        jnp.zeros((1,), jnp.int32)), jax.random.key(0))


def test_bfloat16_compute_is_close_to_float32():
  model = UNet(**SMALL)
  params = random_params(model)
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
  t = jnp.array([0, 99])
  y32 = _apply(model, params, x, t)
  y16 = _apply(UNet(**{**SMALL, "dtype": "bfloat16"}), params, x, t)
  assert y16.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(y16 - y32))) < 0.05 * float(jnp.max(jnp.abs(y32)))


@pytest.mark.slow
def test_models_axis_unroll_gives_per_model_gradients():
  """A vmapped training gradient with conv_batching="unroll" equals K separate one-model
  gradients (every conv path is checked against per-model convolutions, forward and
  both gradient orders, in layers_test.py; this is the whole-model check)."""
  k = 2
  params = [random_params(UNet(**SMALL), seed=i) for i in range(k)]
  x = jax.random.normal(jax.random.key(1), (k, 2, 8, 8, 1))
  t = jnp.array([[1, 80], [40, 99]])

  def loss(params, x, t, batching):
    y = UNet(**SMALL, conv_batching=batching).apply({"params": params}, x, t)
    return jnp.mean((y - x) ** 2)

  one = jax.jit(jax.value_and_grad(loss), static_argnums=3)
  lifted = jax.jit(jax.vmap(jax.value_and_grad(loss), in_axes=(0, 0, 0, None)),
                   static_argnums=3)
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *params)
  losses, grads = lifted(stacked, x, t, "unroll")
  for i in range(k):
    ref_loss, ref_grads = one(params[i], x[i], t[i], "native")
    np.testing.assert_allclose(losses[i], ref_loss, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-6),
                 grads, ref_grads)
