"""The residual MLP score network of the paper's Gaussian-mixture study (SM B, Fig. 8).

  h = Linear(d -> W)(x)
  3 x:  h = LayerNorm(h + Linear(W, W)(GELU(Linear(W, W)(h + emb(t)))))
  out = Linear(W -> d)(h)

emb(t) is a fixed sinusoidal encoding of the integer DDPM index t (not trained):
emb[t, 2k] = cos(t f_k), emb[t, 2k+1] = sin(t f_k), f_k = min_freq^(2k / W), added to the
input of the first linear layer of each block only (the skip path carries h without it).
Trainable parameters: p(d, W) = W (2d + 13) + d + 6 W^2 (d = 8, W = 128: 102,024).

Class-conditional variant (paper SM B.3, classifier-free guidance; its architecture is not
given there): with num_classes = C > 0 a learned embedding of the label y in
{0, ..., C - 1, C = null} is added to emb(t) at every block input, h + emb(t) + e(y):
(C + 1) W more parameters. Training replaces labels by the null class
with probability `train.label_dropout`, so the same network also gives the unconditional
eps(x, t | null) that guidance needs (jaxdiff.diffusion.guided_eps_fn).

Inputs of any trailing shape are flattened (8x8 digits become d = 64) and the output is
reshaped back, so the same network serves vector and small image data.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff.models import layers


def sinusoidal_encoding(t: jax.Array, dim: int, min_freq: float = 1e-4) -> jax.Array:
  """[B] integer times -> [B, dim]: cos on even columns, sin on odd columns."""
  k = jnp.arange(dim // 2, dtype=jnp.float32)
  freqs = min_freq ** (2.0 * k / dim)
  angles = t.astype(jnp.float32)[:, None] * freqs[None, :]
  return jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1).reshape(t.shape[0], -1)


class ResidualMLP(nn.Module):
  """Paper SM B residual MLP; see the module docstring."""
  width: int = 128
  num_blocks: int = 3
  min_freq: float = 1e-4
  num_classes: int = 0  # > 0: class-conditional, label num_classes is the null class

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, y: jax.Array | None = None, *,
               train: bool = False) -> jax.Array:
    """eps_hat [B, ...] of x [B, ...] at DDPM indices t [B]; y [B] labels (None: null)."""
    del train  # no dropout in this network
    shape = x.shape
    h = x.reshape(shape[0], -1)
    d = h.shape[-1]
    emb = sinusoidal_encoding(t, self.width, self.min_freq)
    if self.num_classes > 0:
      if y is None:
        y = jnp.full((shape[0],), self.num_classes, jnp.int32)
      # N(0, 1) initialisation, as PyTorch's nn.Embedding.
      table = nn.Embed(self.num_classes + 1, self.width,
                       embedding_init=nn.initializers.normal(1.0), name="label_embedding")
      emb = emb + table(jnp.asarray(y, jnp.int32))
    elif y is not None:
      raise ValueError("labels given to an unconditional ResidualMLP (num_classes = 0)")
    h = layers.Dense(self.width, name="input")(h)
    for b in range(self.num_blocks):
      z = layers.Dense(self.width, name=f"block{b}_fc1")(h + emb)
      z = layers.Dense(self.width, name=f"block{b}_fc2")(nn.gelu(z, approximate=False))
      h = nn.LayerNorm(epsilon=1e-5, name=f"block{b}_norm")(h + z)
    return layers.Dense(d, name="output")(h).reshape(shape)


def num_params(d: int, width: int, num_classes: int = 0) -> int:
  """p(d, W) = W (2d + 13) + d + 6 W^2 (paper SM B), for 3 blocks; + (C + 1) W conditional."""
  extra = (num_classes + 1) * width if num_classes > 0 else 0
  return width * (2 * d + 13) + d + 6 * width**2 + extra
