"""The paper's Gaussian-mixture study (SM B, Fig. 9): P0 = 1/2 N(1_d, I) + 1/2 N(-1_d, I), d = 8.

  python -m jaxdiff.main --config=configs/gmm.py --workdir=DIR          # the paper's setting
  python -m jaxdiff.main --config=configs/gmm.py:cpu --workdir=DIR      # a CPU-sized version

Paper setting: residual MLP W = 128 (102,024 parameters), SGD lr 6e-3 with momentum 0.95,
full batch (B = n), n in {256, ..., 4096}, 4M steps; Euler-Maruyama sampling of the reverse
SDE with T = 1000 steps; f_mem (k = 1/3) and the KL estimate of eqs. 26-28 on 10,000
samples. Expected (Fig. 9): KL close to 0 after tau_gen independent of n; KL and f_mem
rising at tau_mem proportional to n. Hardware: a GPU (the paper: ~10 h for n = 4096 on an
RTX 2080 Ti).

`:cpu`: n in {64, 128, 256, 512}, Adam lr 1e-3, 20,000 steps, 1,000 samples with 200
Euler-Maruyama steps. Measured on a 2-core CPU: 5 minutes; tau_mem = 934 / 2140 / 3310 /
5470 steps for n = 64 / 128 / 256 / 512 (alpha = 0.83 [0.45, 1.20]), tau_gen ~ 470 steps
for every n, the train/test loss gap opening before tau_mem in every run. The KL estimate
with 1,000 samples and 200 steps has a noise of a few tenths of a nat (it can dip below 0).
"""

from configs import base


def get_config(arg: str | None = None):
  config = base.get_config()
  config.data.dataset = "gmm"
  config.data.dim = 8
  config.data.gmm_mean = 1.0
  config.data.order_seed = 0
  config.data.num_test = 2048
  config.data.n_train = (256, 512, 1024, 2048, 4096)
  config.data.pool_size = 4096 + 10_000

  config.model.name = "mlp"
  config.model.width = 128
  config.model.dropout = 0.0

  config.optim.name = "sgd"
  config.optim.lr = (6e-3,)
  config.optim.momentum = 0.95

  config.train.num_steps = 4_000_000
  config.train.batch_policy = "full"

  config.eval.sampler = "em"
  config.eval.sampler_steps = 999
  config.eval.num_samples = 10_000
  config.eval.sample_batch = 10_000
  config.eval.quality = "gmm"
  config.eval.grid_runs = 0
  # The KL's minimum is near 0: a 10% band is below its noise, so add an absolute floor.
  config.report.tau_gen_abs_tol = 0.02

  if arg == "cpu":
    config.data.n_train = (64, 128, 256, 512)
    config.data.seeds = (0,)
    config.data.pool_size = 4096
    config.optim.name = "adam"
    config.optim.lr = (1e-3,)
    config.train.num_steps = 20_000
    config.train.steps_per_dispatch = 2000
    config.eval.times = ()
    config.eval.grid = "log"
    config.eval.first_time = 250
    config.eval.num_times = 14
    config.eval.sampler_steps = 200
    config.eval.num_samples = 1000
    config.eval.sample_batch = 1000
  elif arg:
    raise ValueError(f"unknown gmm config variant {arg!r}; expected '' or 'cpu'")
  return config
