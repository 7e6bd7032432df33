"""Building blocks shared by jaxdiff's models: PyTorch-initialised layers and a
convolution that stays fast when a models axis is vmapped over its weights.

Usage:

  conv = Conv(features=32, kernel_size=3, conv_batching="unroll")
  y = conv.apply({"params": p}, x)            # x [B, H, W, C] (NHWC)
  ys = jax.vmap(lambda p, x: conv.apply({"params": p}, x))(stacked_p, xs)

Initialisation follows PyTorch's defaults, because the paper's absolute timescales
(tau_gen ~ 1e5 SGD steps at W = 32, paper.md 1.2) were measured from them:
`nn.Linear` / `nn.Conv2d` draw weights from kaiming-uniform(a = sqrt 5), which is
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases from the same interval.

The models axis (design.md "The models axis"): the trainer may lift a one-model step
with `jax.vmap` over stacked parameters. `jax.vmap` of `lax.conv_general_dilated` with a
batched kernel becomes a grouped convolution, which XLA's CPU backend runs 3-5x slower
than the K per-model convolutions. `conv2d(..., batching=...)` selects what happens then:

  native  let vmap build its grouped convolution.
  unroll  the convolution loop: a `jax.custom_batching.custom_vmap` rule loops over the
          models axis (one plain convolution per model, unrolled at trace time; not the
          trainer's train.models_axis="unroll", which copies the whole step per run, see
          jaxdiff.models_axis); when only the activations carry
          the models axis (a shared kernel) it is folded into the batch instead. The
          backward pass (input and kernel gradients) uses the same rule, through a
          `jax.custom_vjp` around it.
  im2col  gather the kh*kw shifted (strided) slices of the padded input into patches and
          contract them with the kernel by one matmul; under vmap that becomes a batched
          matmul over the models axis. Costs a kh*kw-fold patch tensor in memory.

All three give the same numbers as per-model convolutions (tests/layers_test.py).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.ad_checkpoint import checkpoint_name

CONV_BATCHING = ("native", "unroll", "im2col")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")

# Name of the convolution and projection outputs for rematerialisation policies
# (jax.checkpoint_policies.save_only_these_names; UNet.remat = "convs"): the outputs of
# the expensive contractions are kept, the cheap elementwise work around them recomputed.
SAVE_NAME = "contraction"

Padding = tuple[tuple[int, int], tuple[int, int]]


# ----------------------------------------------------------------------------- dtypes


def float32_twin(module):
  """The same network (same parameters) computing in float32.

  Training may compute in bfloat16 (model.dtype; parameters and optimizer state stay
  float32); the evaluation runs the network through this twin, so that the sampler, the
  memorization fraction, the quality features and the fixed-t losses are float32 numbers
  of the float32 parameters, whatever the training's compute dtype.
  """
  dtype = getattr(module, "dtype", None)
  if dtype is None or jnp.dtype(dtype) == jnp.float32:
    return module
  return module.clone(dtype="float32" if isinstance(dtype, str) else jnp.float32)


# ----------------------------------------------------------------------------- init


def torch_uniform(bound: float) -> Callable[..., jax.Array]:
  """Initialiser drawing from U(-bound, bound), PyTorch's default for Linear/Conv."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def torch_default_bound(fan_in: int) -> float:
  """Bound of kaiming_uniform(a=sqrt(5)): gain sqrt(2/(1+5)) * sqrt(3/fan_in) = 1/sqrt(fan_in)."""
  return 1.0 / math.sqrt(fan_in)


# ----------------------------------------------------------------------------- time table


def sinusoidal_table(num_steps: int, dim: int) -> np.ndarray:
  """The frozen time-embedding table of the authors' U-Net (paper.md 1.2).

  emb[t] = [sin(t f_0), ..., sin(t f_{h-1}), cos(t f_0), ..., cos(t f_{h-1})] with
  h = dim / 2 and f_k = exp(-k log(10000) / (h - 1)), for t = 0 .. num_steps-1.

  Computed in float32 like the reference (torch float32 arithmetic), so that a network
  trained there sees the same inputs here; it is a constant, not a parameter.

  Args:
    num_steps: T, the number of DDPM steps (rows).
    dim: embedding width (the U-Net base width W); even and >= 4.

  Returns:
    float32 array [num_steps, dim].
  """
  half = dim // 2
  scale = np.float32(math.log(10000) / (half - 1))
  freqs = np.exp(np.arange(half, dtype=np.float32) * -scale)  # [h]
  args = np.arange(num_steps, dtype=np.float32)[:, None] * freqs[None, :]  # [T, h]
  return np.concatenate([np.sin(args), np.cos(args)], axis=-1).astype(np.float32)


# ----------------------------------------------------------------------------- convolution


def _conv(x, kernel, strides, padding):
  """One model's convolution: x [B, H, W, Cin], kernel [kh, kw, Cin, Cout]."""
  return lax.conv_general_dilated(
      x, kernel, window_strides=strides, padding=padding,
      dimension_numbers=_DIMENSION_NUMBERS)


def _loop_over_models(fun: Callable, foldable: Callable[[Sequence[bool]], bool]):
  """Wraps a one-model function of arrays so that vmap over it loops over the models.

  Args:
    fun: a function of positional arrays whose leading dimension (for activations) is the
      image batch.
    foldable: given which arguments are batched, whether the models axis can be merged
      into the image batch of every batched argument (true when no weight is batched:
      then one call on a K-times larger batch is exactly the K separate calls).

  Returns:
    A `custom_vmap` function equal to `fun`. Its rule calls the wrapped function itself
    for each model, so nested vmaps (e.g. models inside data) take the same path. The
    K calls are independent, so XLA may run them concurrently; compile time grows with
    K. (A `lax.map` over the models instead compiles once, but measured 8x slower on
    XLA:CPU: a while loop around a convolution.)
  """
  wrapped = jax.custom_batching.custom_vmap(fun)

  def rule(axis_size, in_batched, *args):
    if foldable(in_batched):
      # [K, B, ...] -> [K*B, ...]: a shared kernel, so one call serves all models.
      batch = next(a.shape[1] for a, b in zip(args, in_batched) if b)
      flat = [a.reshape((axis_size * batch,) + a.shape[2:]) if b else a
              for a, b in zip(args, in_batched)]
      out = wrapped(*flat)
      return out.reshape((axis_size, batch) + out.shape[1:]), True
    outs = [wrapped(*[a[k] if b else a for a, b in zip(args, in_batched)])
            for k in range(axis_size)]
    return jnp.stack(outs), True

  wrapped.def_vmap(rule)
  return wrapped


@functools.lru_cache(maxsize=None)
def _looped_conv(strides: tuple[int, int], padding: Padding):
  """conv(x, kernel) with custom vmap (the convolution loop over models) and matching
  custom VJP.

  `custom_vmap` functions support forward-mode but not reverse-mode autodiff, hence the
  `custom_vjp` around them, whose backward pieces (input and kernel gradients) are
  custom_vmap functions too. Second derivatives are not supported (training needs none).
  """

  def fwd_plain(x, kernel):
    return _conv(x, kernel, strides, padding)

  def dx_plain(x, g, kernel):
    # x only supplies the shape: the convolution is linear in x.
    x_aval = jax.ShapeDtypeStruct(x.shape, x.dtype)
    (dx,) = jax.linear_transpose(lambda v: _conv(v, kernel, strides, padding), x_aval)(g)
    return dx

  def dk_plain(x, g, kernel):
    # kernel only supplies the shape: the convolution is linear in the kernel too.
    k_aval = jax.ShapeDtypeStruct(kernel.shape, kernel.dtype)
    (dk,) = jax.linear_transpose(lambda k: _conv(x, k, strides, padding), k_aval)(g)
    return dk

  # Args (x, kernel): fold when the kernel is shared.
  fwd = _loop_over_models(fwd_plain, lambda b: b[0] and not b[1])
  # Args (x, g, kernel): the input gradient also folds when the kernel is shared.
  dx = _loop_over_models(dx_plain, lambda b: b[0] and b[1] and not b[2])
  # The kernel gradient sums over the image batch, so models never fold into it.
  dk = _loop_over_models(dk_plain, lambda b: False)

  @jax.custom_vjp
  def conv(x, kernel):
    return fwd(x, kernel)

  def conv_fwd(x, kernel):
    return fwd(x, kernel), (x, kernel)

  def conv_bwd(res, g):
    x, kernel = res
    return dx(x, g, kernel), dk(x, g, kernel)

  conv.defvjp(conv_fwd, conv_bwd)
  return conv


def _im2col_conv(x, kernel, strides, padding):
  """Convolution as patches @ kernel; vmap turns the matmul into a batched one.

  The patches are kh*kw strided slices of the padded input, concatenated on the channel
  axis in (kh, kw, Cin) order, which is the HWIO kernel's own order; their transpose in
  the backward pass is pads and adds (no grouped convolution anywhere).
  """
  kh, kw, cin, cout = kernel.shape
  (sh, sw), ((pt, pb), (pl, pr)) = strides, padding
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  ho = (xp.shape[1] - kh) // sh + 1
  wo = (xp.shape[2] - kw) // sw + 1
  patches = [
      lax.slice(xp, (0, i, j, 0), (xp.shape[0], i + sh * (ho - 1) + 1,
                                   j + sw * (wo - 1) + 1, cin), (1, sh, sw, 1))
      for i in range(kh) for j in range(kw)]
  patches = patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)
  return jnp.einsum("bhwp,po->bhwo", patches, kernel.reshape(kh * kw * cin, cout))


def conv2d(x: jax.Array, kernel: jax.Array, *, strides=(1, 1), padding: Padding,
           batching: str = "native") -> jax.Array:
  """2-D convolution (cross-correlation, as PyTorch's Conv2d) in NHWC / HWIO layout.

  Args:
    x: [B, H, W, Cin].
    kernel: [kh, kw, Cin, Cout].
    strides: (sh, sw).
    padding: ((top, bottom), (left, right)), explicit as in PyTorch.
    batching: what a vmap over a models axis does: "native" | "unroll" | "im2col" (see
      the module docstring). The value does not change the result.

  Returns:
    [B, H', W', Cout].
  """
  strides = tuple(int(s) for s in strides)
  padding = tuple((int(a), int(b)) for a, b in padding)
  if batching == "native":
    return _conv(x, kernel, strides, padding)
  if batching == "unroll":
    return _looped_conv(strides, padding)(x, kernel)
  if batching == "im2col":
    return _im2col_conv(x, kernel, strides, padding)
  raise ValueError(f"conv batching {batching!r} not in {CONV_BATCHING}")


# ----------------------------------------------------------------------------- modules


class Dense(nn.Module):
  """nn.Linear with PyTorch's default init; kernel stored [in, out] (Flax layout).

  Attributes:
    features: output width.
    use_bias: add a bias.
    kernel_init / bias_init: override the PyTorch defaults (None keeps them).
    dtype: compute dtype (parameters stay float32).
  """
  features: int
  use_bias: bool = True
  kernel_init: Any = None
  bias_init: Any = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1]
    bound = torch_default_bound(fan_in)
    kernel = self.param("kernel", self.kernel_init or torch_uniform(bound),
                        (fan_in, self.features), jnp.float32)
    y = checkpoint_name(jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype)), SAVE_NAME)
    if self.use_bias:
      bias = self.param("bias", self.bias_init or torch_uniform(bound), (self.features,),
                        jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


class Conv(nn.Module):
  """nn.Conv2d(k, stride, padding) with PyTorch's default init, NHWC, kernel HWIO.

  Attributes:
    features: output channels.
    kernel_size: square kernel side k.
    strides: stride s (both dimensions).
    padding: symmetric zero padding (PyTorch's `padding=`), explicit so that the stride-2
      downsampling matches PyTorch's ((1, 1), not 'SAME''s (0, 1)).
    conv_batching: "native" | "unroll" | "im2col" (module docstring).
    dtype: compute dtype (parameters stay float32).
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  padding: int = 1
  conv_batching: str = "native"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, cin = self.kernel_size, x.shape[-1]
    bound = torch_default_bound(cin * k * k)
    kernel = self.param("kernel", torch_uniform(bound), (k, k, cin, self.features),
                        jnp.float32)
    bias = self.param("bias", torch_uniform(bound), (self.features,), jnp.float32)
    p = self.padding
    y = conv2d(x.astype(self.dtype), kernel.astype(self.dtype),
               strides=(self.strides, self.strides), padding=((p, p), (p, p)),
               batching=self.conv_batching)
    y = checkpoint_name(y, SAVE_NAME)
    return y + bias.astype(self.dtype)


class GroupNorm(nn.Module):
  """torch.nn.GroupNorm(num_groups, C) on NHWC: eps 1e-5, biased two-pass variance.

  Statistics per (image, group) over H, W and the group's channels, in float32; scale
  starts at 1 and bias at 0 (PyTorch's defaults). Written out rather than taken from
  flax.linen.GroupNorm because its lean graph compiles markedly faster under XLA:CPU,
  which matters with K models unrolled in one program.

  Attributes:
    num_groups: groups G (C must be divisible by it).
    dtype: output dtype.
  """
  num_groups: int = 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    xg = x.astype(jnp.float32).reshape(x.shape[:-1] + (self.num_groups, c // self.num_groups))
    axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)
    mean = jnp.mean(xg, axis=axes, keepdims=True)
    centred = xg - mean
    var = jnp.mean(jnp.square(centred), axis=axes, keepdims=True)
    y = (centred * lax.rsqrt(var + 1e-5)).reshape(x.shape)
    return (y * scale + bias).astype(self.dtype)


def group_norm(num_groups: int, name: str | None = None, dtype=jnp.float32) -> GroupNorm:
  """GroupNorm as PyTorch's (see GroupNorm)."""
  return GroupNorm(num_groups=num_groups, dtype=dtype, name=name)


class SelfAttention(nn.Module):
  """x + MHA(GN(x)) over the H*W positions, as torch.nn.MultiheadAttention.

  Parameters: `norm` (GroupNorm), `qkv` (in-projection, kernel [C, 3C] = PyTorch's
  in_proj_weight transposed, rows ordered q, k, v; xavier-uniform, bias 0) and `out`
  (out-projection, PyTorch Linear default weight, bias 0), as PyTorch initialises them.

  Attributes:
    num_heads: attention heads (C must be divisible by it).
    num_groups: GroupNorm groups.
    dtype: compute dtype; the softmax runs in float32.
  """
  num_heads: int = 4
  num_groups: int = 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, hh, ww, c = x.shape
    hd = c // self.num_heads
    h = group_norm(self.num_groups, "norm", self.dtype)(x).reshape(b, hh * ww, c)
    qkv = Dense(3 * c, kernel_init=nn.initializers.xavier_uniform(),
                bias_init=nn.initializers.zeros, dtype=self.dtype, name="qkv")(h)
    q, k, v = (a.reshape(b, hh * ww, self.num_heads, hd) for a in jnp.split(qkv, 3, -1))
    logits = jnp.einsum("blhd,bmhd->bhlm", q, k).astype(jnp.float32) / math.sqrt(hd)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    o = jnp.einsum("bhlm,bmhd->blhd", weights, v).reshape(b, hh * ww, c)
    o = Dense(c, bias_init=nn.initializers.zeros, dtype=self.dtype, name="out")(o)
    return x + o.reshape(b, hh, ww, c).astype(x.dtype)
