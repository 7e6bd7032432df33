"""The authors' PyTorch U-Net checkpoints in and out of jaxdiff.

The authors save `model.state_dict()` of their `Unet.UNet` with `torch.save`, usually
through `nn.DataParallel` (keys prefixed `module.`). This module maps those tensors one
to one onto `jaxdiff.models.unet.UNet` parameters and back, so a PyTorch run can be
evaluated with jaxdiff's samplers and metrics, or a jaxdiff run loaded in PyTorch.

Usage:

  params = load_torch_checkpoint("Models/.../Model_1620000", width=32)
  model = UNet(width=32)
  eps_hat = model.apply({"params": params}, x, t)          # x [B, H, W, 1], NHWC

  sd = torch_state_dict_from_params(params, width=32)       # name -> numpy array
  torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})

Layouts: PyTorch Conv2d weights are [out, in, kh, kw], Flax HWIO kernels [kh, kw, in,
out]; Linear weights are [out, in], Flax kernels [in, out]; the attention in-projection
`in_proj_weight` [3C, C] (rows q, k, v) is the transpose of the `qkv` kernel. The frozen
sinusoidal table (`time_embeddings.time_mlp.0.weight`, not a jaxdiff parameter) is
checked on import and written on export, so `load_state_dict(strict=True)` accepts it.
torch itself is optional: only `load_torch_checkpoint` imports it.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxdiff.errors import DataError
from jaxdiff.models import layers
from jaxdiff.models.unet import UNet

_TABLE_KEY = "time_embeddings.time_mlp.0.weight"
_PREFIX = "module."

# Flax ResBlock submodule -> PyTorch ResnetBlock submodule.
_RESBLOCK = {
    "norm_1": "block1.norm",
    "conv_1": "block1.conv",
    "time_dense": "dense",
    "norm_2": "block2.norm",
    "conv_2": "block2.conv",
    "skip_conv": "res_conv",
    "attention/norm": "attention.group_norm",
    "attention/out": "attention.mhsa.out_proj",
}
# Flax top-level names that are not ResBlocks.
_TOP = {
    "time_dense_0": "time_embeddings.time_mlp.1",
    "time_dense_1": "time_embeddings.time_mlp.3",
    "init_conv": "init_conv",
    "final_norm": "final_block.norm",
    "final_conv": "final_block.conv",
}


def _torch_name(path: tuple[str, ...]) -> str:
  """PyTorch state_dict key of one Flax parameter path, e.g. ('encoder_0', 'conv_1', 'kernel')."""
  top, *rest = path
  leaf = rest[-1]
  module = "/".join(rest[:-1])
  if top in _TOP:
    base = _TOP[top]
  else:
    kind, index = top.rsplit("_", 1)
    container = {"encoder": "encoder_blocks", "middle": "bottleneck_blocks",
                 "decoder": "decoder_blocks"}[kind]
    base = f"{container}.{index}"
    if not module:  # a bare Conv at block level: down- or upsampling
      base += ".downsample" if kind == "encoder" else ".upsample.1"
    elif module == "attention/qkv":
      return f"{base}.attention.mhsa.in_proj_{'weight' if leaf == 'kernel' else 'bias'}"
    else:
      base += "." + _RESBLOCK[module]
  torch_leaf = {"kernel": "weight", "scale": "weight", "bias": "bias"}[leaf]
  return f"{base}.{torch_leaf}"


def _to_torch_layout(value: np.ndarray) -> np.ndarray:
  if value.ndim == 4:  # HWIO -> OIHW
    return np.transpose(value, (3, 2, 0, 1))
  if value.ndim == 2:  # [in, out] -> [out, in]
    return value.T
  return value


def _from_torch_layout(value: np.ndarray) -> np.ndarray:
  if value.ndim == 4:  # OIHW -> HWIO
    return np.transpose(value, (2, 3, 1, 0))
  if value.ndim == 2:
    return value.T
  return value


def _param_shapes(width: int, in_channels: int, image_size: int, unet_kwargs) -> dict:
  model = UNet(width=width, **unet_kwargs)
  model.validate()
  levels = len(model.channel_mult)
  side = max(image_size, 2 ** (levels - 1))
  shapes = jax.eval_shape(
      lambda k: model.init(k, jnp.zeros((1, side, side, in_channels)),
                           jnp.zeros((1,), jnp.int32)),
      jax.random.key(0))["params"]
  return traverse_util.flatten_dict(shapes), model


def _as_numpy(value) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor (possibly on a GPU)
    value = value.detach().cpu().float().numpy()
  return np.asarray(value)


def params_from_torch_state_dict(state_dict: Mapping[str, Any], width: int,
                                 **unet_kwargs) -> dict:
  """jaxdiff UNet parameters from the authors' PyTorch `Unet.UNet` state_dict.

  Args:
    state_dict: mapping of key -> array (numpy arrays or torch tensors), keys as in the
      authors' `Unet.py`, optionally all prefixed `module.` (nn.DataParallel).
    width: base width W the checkpoint was trained with (their `-W`).
    **unet_kwargs: other UNet fields (channel_mult, attention, num_res_blocks, num_heads,
      num_groups, num_steps, ...) when they differ from the paper's defaults. The image
      channels are read from `init_conv.weight`.

  Returns:
    The `params` tree for `UNet(width=width, **unet_kwargs)`, float32 jax arrays.

  Raises:
    DataError: keys missing or unexpected, shapes that do not match that architecture, or
      a time table that is not the sinusoidal one of this T and W.
  """
  sd = {k: v for k, v in state_dict.items()}
  if sd and all(k.startswith(_PREFIX) for k in sd):
    sd = {k[len(_PREFIX):]: v for k, v in sd.items()}
  if "init_conv.weight" not in sd:
    raise DataError(
        "the state_dict has no 'init_conv.weight': it is not a checkpoint of the authors' "
        "Unet.UNet (keys start with: " + ", ".join(sorted(sd)[:5]) + ")")
  in_channels = int(np.shape(sd["init_conv.weight"])[1])
  flat_shapes, model = _param_shapes(width, in_channels, 8, unet_kwargs)
  names = {path: _torch_name(path) for path in flat_shapes}
  expected = set(names.values()) | {_TABLE_KEY}
  missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - expected)
  if missing or unexpected:
    raise DataError(
        f"the state_dict does not match jaxdiff's U-Net with width={width} "
        f"{unet_kwargs or ''}: missing keys {missing[:6]}{'...' if len(missing) > 6 else ''}"
        f", unexpected keys {unexpected[:6]}{'...' if len(unexpected) > 6 else ''}; pass "
        "the width and architecture the checkpoint was trained with")
  table = _as_numpy(sd[_TABLE_KEY]).astype(np.float32)
  ours = layers.sinusoidal_table(model.num_steps, width)
  if table.shape != ours.shape or not np.allclose(table, ours, atol=1e-3):
    raise DataError(
        f"the state_dict's {_TABLE_KEY} (shape {table.shape}) is not the sinusoidal table "
        f"of T={model.num_steps}, W={width}; pass num_steps=T of the checkpoint")
  flat = {}
  for path, shape in flat_shapes.items():
    value = _from_torch_layout(_as_numpy(sd[names[path]]).astype(np.float32))
    if value.shape != tuple(shape.shape):
      raise DataError(
          f"the state_dict's {names[path]} has shape {_to_torch_layout(value).shape}, "
          f"expected {_to_torch_layout(np.zeros(shape.shape)).shape} for width={width}; "
          "pass the width and architecture the checkpoint was trained with")
    flat[path] = jnp.asarray(value)
  return traverse_util.unflatten_dict(flat)


def torch_state_dict_from_params(params, width: int, **unet_kwargs) -> dict[str, np.ndarray]:
  """The authors' `Unet.UNet` state_dict (name -> float32 numpy array) from jaxdiff params.

  Args:
    params: the `params` tree of `UNet(width=width, **unet_kwargs)` (one model: no
      leading models axis).
    width: base width W.
    **unet_kwargs: other UNet fields, as for `params_from_torch_state_dict`.

  Returns:
    A plain dict without the `module.` prefix, including the frozen time table, ready for
    `torch_model.load_state_dict({k: torch.from_numpy(v) ...})`.
  """
  flat = traverse_util.flatten_dict(params)
  in_channels = int(np.shape(flat[("init_conv", "kernel")])[2])
  flat_shapes, model = _param_shapes(width, in_channels, 8, unet_kwargs)
  if set(flat) != set(flat_shapes):
    raise ValueError(
        f"params do not belong to UNet(width={width}, {unet_kwargs}): "
        f"differing paths {sorted(set(flat) ^ set(flat_shapes))[:6]}")
  sd = {}
  for path, value in flat.items():
    if tuple(np.shape(value)) != tuple(flat_shapes[path].shape):
      raise ValueError(
          f"parameter {'/'.join(path)} has shape {np.shape(value)}, expected "
          f"{flat_shapes[path].shape} (one model's params, no leading models axis)")
    sd[_torch_name(path)] = np.ascontiguousarray(
        _to_torch_layout(np.asarray(value, np.float32)))
  sd[_TABLE_KEY] = layers.sinusoidal_table(model.num_steps, width)
  return sd


def load_torch_checkpoint(path: str | os.PathLike, width: int, **unet_kwargs) -> dict:
  """Reads a `torch.save`d state_dict of the authors' U-Net into jaxdiff parameters.

  Needs torch (pip install -e '.[torch]'); the file is loaded on the CPU.

  Raises:
    DataError: the file is missing or is not such a checkpoint.
  """
  if not os.path.isfile(path):
    raise DataError(f"no PyTorch checkpoint at {path}: pass the path of a file saved by "
                    "the authors' training script (Models/<run>/Model_<step>)")
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError(f"reading {path} needs torch: pip install -e '.[torch]'") from e
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pickle errors of many kinds: a file of something else
    raise DataError(f"{path} could not be read as a PyTorch state_dict ({e})") from e
  if not isinstance(state, Mapping):
    raise DataError(f"{path} holds a {type(state).__name__}, not a state_dict of the "
                    "authors' U-Net")
  return params_from_torch_state_dict(state, width, **unet_kwargs)
