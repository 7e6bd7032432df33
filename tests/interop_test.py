"""Tests of jaxdiff.interop: round trips, error messages, and a forward pass against a
PyTorch re-statement of the authors' U-Net (written here from paper.md 1.2, with the
state_dict key names of their Unet.py) with identical weights."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import interop
from jaxdiff.errors import DataError
from jaxdiff.models.unet import UNet

SMALL = dict(channel_mult=(1, 2), attention=(False, True), num_res_blocks=1, num_heads=2,
             num_steps=100)


def _random_params(model, side=8, channels=1, seed=0):
  shapes = jax.eval_shape(
      lambda k: model.init(k, jnp.zeros((1, side, side, channels)),
                           jnp.zeros((1,), jnp.int32)), jax.random.key(0))["params"]
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)


def test_round_trip_is_exact_with_and_without_dataparallel_prefix():
  for kwargs, channels in [({}, 1), (SMALL, 3)]:
    params = _random_params(UNet(width=8, **kwargs), channels=channels)
    sd = interop.torch_state_dict_from_params(params, 8, **kwargs)
    assert sd["init_conv.weight"].shape == (8, channels, 3, 3)  # OIHW
    assert sd["time_embeddings.time_mlp.1.weight"].shape == (32, 8)  # [out, in]
    for state in (sd, {"module." + k: v for k, v in sd.items()}):
      back = interop.params_from_torch_state_dict(state, 8, **kwargs)
      jax.tree.map(np.testing.assert_array_equal, back, params)


def test_authors_key_names():
  sd = interop.torch_state_dict_from_params(_random_params(UNet(width=8)), 8)
  for key, shape in [
      ("time_embeddings.time_mlp.0.weight", (1000, 8)),  # the frozen table
      ("time_embeddings.time_mlp.3.weight", (32, 32)),
      ("encoder_blocks.0.block1.norm.weight", (8,)),
      ("encoder_blocks.0.block2.conv.weight", (8, 8, 3, 3)),
      ("encoder_blocks.0.dense.weight", (8, 32)),
      ("encoder_blocks.2.downsample.weight", (8, 8, 3, 3)),
      ("encoder_blocks.3.res_conv.weight", (16, 8, 1, 1)),
      ("encoder_blocks.3.attention.group_norm.weight", (16,)),
      ("encoder_blocks.3.attention.mhsa.in_proj_weight", (48, 16)),
      ("encoder_blocks.3.attention.mhsa.in_proj_bias", (48,)),
      ("encoder_blocks.3.attention.mhsa.out_proj.weight", (16, 16)),
      ("bottleneck_blocks.0.attention.mhsa.out_proj.bias", (32,)),
      ("bottleneck_blocks.1.block2.conv.bias", (32,)),
      ("decoder_blocks.0.block1.conv.weight", (32, 64, 3, 3)),
      ("decoder_blocks.3.upsample.1.weight", (32, 32, 3, 3)),
      ("final_block.norm.weight", (8,)),
      ("final_block.conv.weight", (1, 8, 3, 3)),
  ]:
    assert sd[key].shape == shape, key
  assert len(sd) == 276 + 1  # 276 trainable tensors + the frozen table


@pytest.mark.slow
def test_mismatches_raise_data_error():
  params = _random_params(UNet(width=8))
  sd = interop.torch_state_dict_from_params(params, 8)
  with pytest.raises(DataError, match="missing keys.*final_block.conv.bias"):
    interop.params_from_torch_state_dict(
        {k: v for k, v in sd.items() if k != "final_block.conv.bias"}, 8)
  with pytest.raises(DataError, match="unexpected keys.*label_proj.weight"):
    interop.params_from_torch_state_dict({**sd, "label_proj.weight": np.zeros((32, 10))}, 8)
  with pytest.raises(DataError, match="shape"):
    interop.params_from_torch_state_dict(sd, 16)  # trained with W=8, loaded as W=16
  with pytest.raises(DataError, match="num_steps"):
    interop.params_from_torch_state_dict(sd, 8, num_steps=500)
  with pytest.raises(DataError, match="init_conv.weight"):
    interop.params_from_torch_state_dict({"fc.weight": np.zeros((2, 2))}, 8)


def test_load_torch_checkpoint_missing_file(tmp_path):
  with pytest.raises(DataError, match="no PyTorch checkpoint"):
    interop.load_torch_checkpoint(tmp_path / "Model_1000", 8)


# ------------------------------------------------------------- PyTorch re-statement


def _torch_unet(channels, width, channel_mult=(1, 2, 4), attention=(False, True, True),
                num_res_blocks=2, num_heads=4, num_groups=8, dropout=0.1, num_steps=1000):
  """The authors' architecture (paper.md 1.2) in PyTorch, NCHW, their module names."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn
  import torch.nn.functional as F

  class NormActConv(nn.Module):  # GN -> SiLU -> Dropout2d -> Conv3x3
    def __init__(self, cin, cout, p):
      super().__init__()
      self.norm, self.conv, self.p = nn.GroupNorm(num_groups, cin), nn.Conv2d(
          cin, cout, 3, padding=1), p

    def forward(self, x):
      return self.conv(F.dropout2d(F.silu(self.norm(x)), self.p, self.training))

  class SelfAttention(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.group_norm = nn.GroupNorm(num_groups, c)
      self.mhsa = nn.MultiheadAttention(c, num_heads, batch_first=True)

    def forward(self, x):
      b, c, h, w = x.shape
      tokens = self.group_norm(x).reshape(b, c, h * w).permute(0, 2, 1)
      out, _ = self.mhsa(tokens, tokens, tokens, need_weights=False)
      return x + out.permute(0, 2, 1).reshape(b, c, h, w)

  class ResBlock(nn.Module):
    def __init__(self, cin, cout, attend):
      super().__init__()
      self.block1 = NormActConv(cin, cout, 0.0)
      self.dense = nn.Linear(4 * width, cout)
      self.block2 = NormActConv(cout, cout, dropout)
      self.res_conv = nn.Conv2d(cin, cout, 1) if cin != cout else None
      self.attention = SelfAttention(cout) if attend else None

    def forward(self, x, emb):
      h = self.block1(x) + self.dense(F.silu(emb))[:, :, None, None]
      h = self.block2(h) + (x if self.res_conv is None else self.res_conv(x))
      return h if self.attention is None else self.attention(h)

  class Down(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.downsample = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x, emb):
      return self.downsample(x)

  class Up(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.upsample = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                    nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x, emb):
      return self.upsample(x)

  class TorchUNet(nn.Module):
    def __init__(self):
      super().__init__()
      half = width // 2
      freqs = torch.exp(-math.log(10000) / (half - 1) * torch.arange(half).float())
      angles = torch.arange(num_steps).float()[:, None] * freqs[None]
      table = torch.cat([angles.sin(), angles.cos()], dim=1)
      self.time_embeddings = nn.Module()
      self.time_embeddings.time_mlp = nn.Sequential(
          nn.Embedding.from_pretrained(table), nn.Linear(width, 4 * width), nn.GELU(),
          nn.Linear(4 * width, 4 * width))
      self.init_conv = nn.Conv2d(channels, width, 3, padding=1)
      widths = [width * m for m in channel_mult]
      skip_channels, c = [width], width
      self.encoder_blocks = nn.ModuleList()
      for level, cout in enumerate(widths):
        for _ in range(num_res_blocks):
          self.encoder_blocks.append(ResBlock(c, cout, attention[level]))
          c = cout
          skip_channels.append(c)
        if level < len(widths) - 1:
          self.encoder_blocks.append(Down(c))
          skip_channels.append(c)
      self.bottleneck_blocks = nn.ModuleList([ResBlock(c, c, True), ResBlock(c, c, False)])
      self.decoder_blocks = nn.ModuleList()
      for level in range(len(widths) - 1, -1, -1):
        for _ in range(num_res_blocks + 1):
          self.decoder_blocks.append(
              ResBlock(c + skip_channels.pop(), widths[level], attention[level]))
          c = widths[level]
        if level > 0:
          self.decoder_blocks.append(Up(c))
      self.final_block = NormActConv(width, channels, 0.0)

    def forward(self, x, t):
      emb = self.time_embeddings.time_mlp(t)
      h = self.init_conv(x)
      skips = [h]
      for layer in self.encoder_blocks:
        h = layer(h, emb)
        skips.append(h)
      for layer in self.bottleneck_blocks:
        h = layer(h, emb)
      for layer in self.decoder_blocks:
        if isinstance(layer, ResBlock):
          h = torch.cat([h, skips.pop()], dim=1)
        h = layer(h, emb)
      return self.final_block(h)

  return TorchUNet()


@pytest.mark.slow
@pytest.mark.torch
def test_torch_parameter_count_matches():
  # An independent count: the PyTorch re-statement's trainable parameters.
  for width, count in [(8, 255_089), (32, 4_023_233)]:
    model = _torch_unet(1, width)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == count


@pytest.mark.torch
@pytest.mark.parametrize("channels,kwargs", [(1, {}), (3, SMALL)])
@pytest.mark.slow
def test_forward_matches_pytorch(channels, kwargs, tmp_path):
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  tmodel = _torch_unet(channels, 8, **kwargs).eval()
  with torch.no_grad():  # move every bias / norm parameter off its default value
    for p in tmodel.parameters():
      if p.requires_grad:
        p.add_(0.05 * torch.randn_like(p))
  rng = np.random.default_rng(0)
  x = rng.standard_normal((3, channels, 8, 8)).astype(np.float32)
  t = np.array([0, 40, kwargs.get("num_steps", 1000) - 1])
  with torch.no_grad():
    ref = tmodel(torch.from_numpy(x), torch.from_numpy(t)).numpy()

  # The authors' files: torch.save of a DataParallel model's state_dict.
  path = tmp_path / "Model_1000"
  torch.save({"module." + k: v for k, v in tmodel.state_dict().items()}, path)
  params = interop.load_torch_checkpoint(path, 8, **kwargs)
  out = jax.jit(UNet(width=8, **kwargs).apply)(
      {"params": params}, jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(t))
  np.testing.assert_allclose(np.asarray(out).transpose(0, 3, 1, 2), ref, atol=1e-4)
  assert np.abs(ref).max() > 0.1  # a non-trivial output

  # Export back: PyTorch accepts it strictly and computes the same thing.
  sd = interop.torch_state_dict_from_params(params, 8, **kwargs)
  fresh = _torch_unet(channels, 8, **kwargs).eval()
  fresh.load_state_dict({k: torch.tensor(v) for k, v in sd.items()}, strict=True)
  with torch.no_grad():
    again = fresh(torch.from_numpy(x), torch.from_numpy(t)).numpy()
  # Not bit-equal only because the exported time table is numpy's float32 sin/cos.
  np.testing.assert_allclose(again, ref, atol=1e-5)
