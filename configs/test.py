"""A tiny sweep for tests: digits, 3 values of n x 2 seeds, a small MLP, 200 Adam steps.

  python -m jaxdiff.main --config=configs/test.py --workdir=/tmp/jaxdiff_test

Sized for this project's 2-core CPU test machine: about half a minute including
compilation. It exercises every output of a sweep (metrics, checkpoints, sample grids,
report); its numbers mean nothing.
"""

from configs import base


def get_config():
  config = base.get_config()
  config.data.dataset = "digits"
  config.data.image_size = 8
  config.data.n_train = (8, 16, 32)
  config.data.seeds = (0, 1)
  config.data.num_test = 100
  config.data.order_seed = 0

  config.model.name = "mlp"
  config.model.width = 32
  config.model.dropout = 0.0

  config.optim.name = "adam"
  config.optim.lr = (1e-3,)

  config.train.num_steps = 200
  config.train.batch_size = 16
  config.train.batch_policy = "min"
  config.train.steps_per_dispatch = 100
  # vmap, not CPU's default per-run copies: a 32-wide MLP is all compile time, and one
  # vmapped step compiles in about half the time of six copies (tests/sharding_test.py
  # checks that both layouts give the same numbers).
  config.train.models_axis = "vmap"

  config.eval.times = (50, 100, 200)
  config.eval.num_samples = 32
  config.eval.sample_batch = 32
  config.eval.sampler_steps = 10
  config.eval.n_bootstrap = 100
  config.eval.loss_noise_draws = 2
  config.eval.quality = "pixel_fd"
  config.eval.fid_num_sets = 1
  config.eval.fid_set_size = 200
  config.eval.grid_runs = 2
  config.eval.grid_samples = 4
  return config
