"""The paper's epsilon-prediction U-Net (SM A.1; layer structure in paper.md 1.2).

Usage:

  model = make_unet(config.model, num_steps=config.diffusion.num_steps)
  params = model.init({"params": key}, x, t)["params"]        # x [B, H, W, C], t [B]
  eps_hat = model.apply({"params": params}, x, t, train=True,
                        rngs={"dropout": dropout_key})        # [B, H, W, C]

Structure (W = width, levels l with channels W*channel_mult[l]):
  time:    emb = table[t] (frozen sinusoids, T x W) -> Dense(4W) -> GELU -> Dense(4W)
  input:   Conv3x3(C -> W)
  encoder: per level, num_res_blocks ResBlocks (+ self-attention where attention[l]),
           then a stride-2 Conv3x3 downsampling except at the last level; the input conv
           output and every encoder output are kept for the skips.
  middle:  ResBlock with attention, ResBlock without.
  decoder: per level, coarsest first, num_res_blocks + 1 ResBlocks, each taking
           concat([h, skip]) (channels last) of the latest kept skip; then nearest x2
           upsampling + Conv3x3 except at the finest level.
  output:  GroupNorm -> SiLU -> Conv3x3(W -> C).
  ResBlock(x, emb): h = Conv3x3(SiLU(GN(x))); h += Dense(SiLU(emb)); h = Conv3x3(
           Dropout2d(SiLU(GN(h)))); h += Conv1x1(x) if channels change else x;
           then h = h + MHA(GN(h)) where attention is on.

Parameters are initialised as PyTorch initialises the authors' model (layers.py), and
named so that `jaxdiff.interop` maps them one to one onto the authors' state_dict.
Trainable parameter counts at C = 1: W = 8: 255,089; 16: 1,010,657; 32: 4,023,233;
48: 9,037,729; 64: 16,054,145 (paper.md 1.2 table).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff.errors import ConfigError
from jaxdiff.models import layers


class ResBlock(nn.Module):
  """Residual block with time embedding, optional self-attention (authors' ResnetBlock).

  Attributes:
    features: output channels.
    attention: apply x + MHA(GN(x)) after the residual sum.
    dropout: channel dropout rate (PyTorch Dropout2d) before the second convolution.
    num_heads, num_groups, conv_batching, dtype: as UNet.
  """
  features: int
  attention: bool
  dropout: float
  num_heads: int
  num_groups: int
  conv_batching: str
  dtype: Any

  @nn.compact
  def __call__(self, x, emb, train: bool):
    conv = lambda name, k=3: layers.Conv(
        self.features, kernel_size=k, padding=k // 2, conv_batching=self.conv_batching,
        dtype=self.dtype, name=name)
    h = nn.silu(layers.group_norm(self.num_groups, "norm_1", self.dtype)(x))
    h = conv("conv_1")(h)
    h = h + layers.Dense(self.features, dtype=self.dtype, name="time_dense")(
        nn.silu(emb))[:, None, None, :]
    h = nn.silu(layers.group_norm(self.num_groups, "norm_2", self.dtype)(h))
    # Dropout2d zeroes whole feature maps: one draw per (image, channel).
    h = nn.Dropout(self.dropout, broadcast_dims=(1, 2), deterministic=not train)(h)
    h = conv("conv_2")(h)
    skip = x if x.shape[-1] == self.features else conv("skip_conv", k=1)(x)
    h = h + skip
    if self.attention:
      h = layers.SelfAttention(self.num_heads, self.num_groups, self.dtype,
                               name="attention")(h)
    return h


REMAT = ("none", "convs", "full")


def _remat_block(remat: str):
  """ResBlock, or ResBlock under `nn.remat` with the policy of UNet.remat.

  `train` (argument 3, counting self) is static: it selects dropout at trace time. The
  dropout key is an input of the checkpointed block, so the recomputed masks are the
  forward pass's own.
  """
  if remat == "none":
    return ResBlock
  policy = (jax.checkpoint_policies.save_only_these_names(layers.SAVE_NAME)
            if remat == "convs" else None)  # None: save nothing but the block's inputs
  return nn.remat(ResBlock, static_argnums=(3,), policy=policy)


class UNet(nn.Module):
  """DDPM epsilon-prediction U-Net of the paper (see the module docstring).

  Attributes:
    width: base width W (channels at the first level; time embedding is 4W).
    channel_mult: channel multiplier per level (the paper: (1, 2, 4)).
    attention: self-attention per level (the paper: (False, True, True)); the first
      middle block always has attention, as in the authors' model.
    num_res_blocks: ResBlocks per encoder level (the decoder has one more).
    num_heads: attention heads.
    num_groups: GroupNorm groups.
    dropout: Dropout2d rate in each ResBlock's second convolution (the paper: 0.1).
    conv_batching: how convolutions run under a vmapped models axis (layers.conv2d).
    dtype: compute dtype name, "float32" | "bfloat16"; parameters stay float32 and the
      output is float32.
    num_steps: T, rows of the frozen sinusoidal time table; t must be in [0, T).
    remat: rematerialisation of each ResBlock in the backward pass (REMAT):
      "none": autodiff keeps every intermediate of the block (fastest, most memory);
      "convs": `jax.checkpoint` keeps only the block's convolution and projection
        outputs (layers.SAVE_NAME) and recomputes the norms, activations, dropout and
        the attention softmax (about one extra elementwise pass per block);
      "full": `jax.checkpoint` keeps only the block's inputs and recomputes the whole
        block (about one extra forward pass, ~+1/3 of the step's FLOPs).
      The results are the same up to float reassociation (tests/remat_test.py).
  """
  width: int
  channel_mult: tuple[int, ...] = (1, 2, 4)
  attention: tuple[bool, ...] = (False, True, True)
  num_res_blocks: int = 2
  num_heads: int = 4
  num_groups: int = 8
  dropout: float = 0.1
  conv_batching: str = "native"
  dtype: str = "float32"
  num_steps: int = 1000
  remat: str = "none"

  @classmethod
  def from_config(cls, model_cfg, num_steps: int) -> "UNet":
    """Builds the U-Net from `config.model` (configs/base.py) and T; validates it."""
    return make_unet(model_cfg, num_steps)

  def validate(self):
    """Raises ConfigError (naming the `model.*` key) for a structurally invalid model."""
    mult, attn = tuple(self.channel_mult), tuple(self.attention)
    if not mult or any(int(m) != m or m < 1 for m in mult):
      raise ConfigError("model.channel_mult", self.channel_mult,
                        "a non-empty tuple of positive integers")
    if len(attn) != len(mult):
      raise ConfigError("model.attention", self.attention,
                        f"one boolean per level of model.channel_mult ({len(mult)})")
    if int(self.num_groups) != self.num_groups or self.num_groups < 1:
      raise ConfigError("model.num_groups", self.num_groups, "a positive integer")
    if (int(self.width) != self.width or self.width < 4 or self.width % 2
        or self.width % self.num_groups):
      raise ConfigError("model.width", self.width,
                        "an even integer >= 4 divisible by model.num_groups "
                        f"({self.num_groups})")
    if int(self.num_res_blocks) != self.num_res_blocks or self.num_res_blocks < 1:
      raise ConfigError("model.num_res_blocks", self.num_res_blocks, "a positive integer")
    attn_channels = [self.width * m for m, a in zip(mult, attn) if a]
    attn_channels.append(self.width * mult[-1])  # the middle block's attention
    if (int(self.num_heads) != self.num_heads or self.num_heads < 1
        or any(c % self.num_heads for c in attn_channels)):
      raise ConfigError("model.num_heads", self.num_heads,
                        f"a positive divisor of every attention width {attn_channels}")
    if not 0.0 <= self.dropout < 1.0:
      raise ConfigError("model.dropout", self.dropout, "a rate in [0, 1)")
    if self.conv_batching not in layers.CONV_BATCHING:
      raise ConfigError("model.conv_batching", self.conv_batching,
                        f"one of {layers.CONV_BATCHING}")
    if self.dtype not in layers.DTYPES:
      raise ConfigError("model.dtype", self.dtype, f"one of {tuple(layers.DTYPES)}")
    if self.remat not in REMAT:
      raise ConfigError("model.remat", self.remat, f"one of {REMAT}")
    if int(self.num_steps) != self.num_steps or self.num_steps < 1:
      raise ConfigError("diffusion.num_steps", self.num_steps, "a positive integer")

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, train: bool = False) -> jax.Array:
    """Predicts the noise.

    Args:
      x: [B, H, W, C] noisy images; H and W divisible by 2**(levels - 1).
      t: [B] integer DDPM step indices in [0, num_steps).
      train: enables dropout (needs rngs={'dropout': key}).

    Returns:
      [B, H, W, C] float32 epsilon prediction.
    """
    self.validate()
    levels = len(self.channel_mult)
    factor = 2 ** (levels - 1)
    if x.ndim != 4 or x.shape[1] % factor or x.shape[2] % factor:
      raise ConfigError("data.image_size", tuple(x.shape[1:3]),
                        f"square NHWC images with a side divisible by {factor}")
    dtype = layers.DTYPES[self.dtype]
    w = self.width
    block_cls = _remat_block(self.remat)
    block = lambda features, attention, name: block_cls(
        features, attention, self.dropout, self.num_heads, self.num_groups,
        self.conv_batching, dtype, name=name)
    conv3 = lambda features, name, strides=1: layers.Conv(
        features, 3, strides, 1, self.conv_batching, dtype, name=name)

    # Time embedding; the table is a constant (the authors freeze it).
    table = jnp.asarray(layers.sinusoidal_table(self.num_steps, w))
    emb = table[t]  # [B, W]
    emb = layers.Dense(4 * w, dtype=dtype, name="time_dense_0")(emb)
    emb = nn.gelu(emb, approximate=False)  # torch.nn.GELU(): the exact erf form
    emb = layers.Dense(4 * w, dtype=dtype, name="time_dense_1")(emb)

    h = conv3(w, "init_conv")(x.astype(dtype))
    skips = [h]
    i = 0
    for level, mult in enumerate(self.channel_mult):
      for _ in range(self.num_res_blocks):
        h = block(w * mult, self.attention[level], f"encoder_{i}")(h, emb, train)
        skips.append(h)
        i += 1
      if level != levels - 1:
        h = conv3(h.shape[-1], f"encoder_{i}", strides=2)(h)
        skips.append(h)
        i += 1

    h = block(h.shape[-1], True, "middle_0")(h, emb, train)
    h = block(h.shape[-1], False, "middle_1")(h, emb, train)

    i = 0
    for level in reversed(range(levels)):
      for _ in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, skips.pop()], axis=-1)
        h = block(w * self.channel_mult[level], self.attention[level],
                  f"decoder_{i}")(h, emb, train)
        i += 1
      if level != 0:
        h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)  # nearest-neighbour x2
        h = conv3(h.shape[-1], f"decoder_{i}")(h)
        i += 1

    h = nn.silu(layers.group_norm(self.num_groups, "final_norm", dtype)(h))
    h = conv3(x.shape[-1], "final_conv")(h)
    return h.astype(jnp.float32)


def make_unet(model_cfg, num_steps: int) -> UNet:
  """UNet from `config.model` (configs/base.py keys) and T = diffusion.num_steps.

  Raises:
    ConfigError: for a width, heads, groups, ... combination the architecture forbids.
  """
  model = UNet(
      width=model_cfg.width,
      channel_mult=tuple(model_cfg.channel_mult),
      attention=tuple(bool(a) for a in model_cfg.attention),
      num_res_blocks=model_cfg.num_res_blocks,
      num_heads=model_cfg.num_heads,
      num_groups=model_cfg.num_groups,
      dropout=model_cfg.dropout,
      conv_batching=model_cfg.conv_batching,
      dtype=model_cfg.dtype,
      num_steps=num_steps,
      remat=model_cfg.get("remat", "none"))
  model.validate()
  return model


def num_params(params) -> int:
  """Number of trainable scalars in a parameter tree (arrays or ShapeDtypeStructs)."""
  return sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params))
