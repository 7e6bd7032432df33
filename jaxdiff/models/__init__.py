"""Score networks, each written for ONE model: `get_model(config.model, num_steps)`.

  unet: the paper's DDPM U-Net (SM A.1), jaxdiff.models.unet.
  mlp: the paper's residual MLP of the Gaussian-mixture study (SM B), jaxdiff.models.mlp.
  (The random-features score model of Sect. 3 lives in jaxdiff.models.random_features and
  is trained by the theory study, not by the diffusion sweep.)

Every network is called as module.apply({'params': p}, x, t, train=..., rngs={'dropout': k})
with x [B, ...] and t [B] int32 DDPM indices, and returns the eps prediction of x's shape.
A class-conditional mlp (model.num_classes > 0) also takes labels: apply(..., x, t, y).
"""

from jaxdiff.errors import ConfigError

MODELS = ("unet", "mlp")


def get_model(model_cfg, num_steps: int):
  """The Flax module named by model_cfg.name."""
  if model_cfg.name == "mlp":
    from jaxdiff.models.mlp import ResidualMLP
    return ResidualMLP(width=model_cfg.width, num_blocks=model_cfg.num_blocks,
                       num_classes=int(model_cfg.get("num_classes", 0)))
  if model_cfg.name == "unet":
    if model_cfg.get("num_classes", 0):
      raise ConfigError("model.num_classes", model_cfg.num_classes,
                        "0 for the U-Net (class conditioning is implemented for the mlp)")
    from jaxdiff.models.unet import make_unet
    return make_unet(model_cfg, num_steps)
  raise ConfigError("model.name", model_cfg.name, f"one of {MODELS}")
