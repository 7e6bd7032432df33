"""The embedded default: memorization vs generalization on scikit-learn's 8x8 digits, on a CPU.

  python -m jaxdiff.main --config=configs/digits.py --workdir=/tmp/jaxdiff_digits

What it shows: one sweep of n in {8, 16, 32, 64, 128} x 2 seeds (10 runs in one program)
of the paper's residual MLP (SM B; width 128, 116,416 parameters on the 64 pixels).
Sample quality reaches its plateau at a time tau_gen that does not depend on n, while the
memorization fraction f_mem starts rising at tau_mem growing about linearly with n
(paper Fig. 2): the report fits tau_mem = c n^alpha.

Setting (calibrated on a 2-core CPU, see the jaxdiff README for the measured table):
digits scaled to [0, 1] and centered per run; the last 500 digits of a fixed permutation
held out; Adam lr 1e-3 (3e-3 was unstable, 3e-4 three times slower); batch 64 for every n,
drawn with replacement (with min(n, 64) small batches, not n, held small-n runs back);
stochastic DDIM (eta = 1, 100 steps), since deterministic DDIM samples stay poor for
thousands of steps on this data and hide tau_gen; 500 samples per run and time; f_mem's
onset at 1%, as held-out real digits already score 0-0.6% (the dataset has near-duplicates).

Hardware: sized for this project's 2-core CPU machine (no accelerator).
Measured there (jax 0.10.2): 5 min 41 s wall time on the idle machine (18 min 43 s with
the cores shared by four other jobs). tau_mem = 276 / 474 / 1010 / 2440 / 7500 steps for
n = 8 / 16 / 32 / 64 / 128 (alpha = 1.21 [1.03, 1.38] censoring-aware; 0.71-1.21 across
the report's onset definitions); tau_gen = 307 / 420 / 482 / 576 / 583 steps (n^0.27,
weaker than tau_mem); at step 375 both n = 8 runs memorize while the n = 128 runs have
f_mem = 0; final f_mem from 94% (n = 8) to 25% (n = 128).
Use `get_config("unet")` (--config=configs/digits.py:unet) for a small paper-style U-Net
instead of the MLP (much slower on a CPU: convolutions cost 60-300x more per model-step).
"""

from configs import base


def get_config(arg: str | None = None):
  config = base.get_config()
  config.data.dataset = "digits"
  config.data.image_size = 8
  config.data.n_train = (8, 16, 32, 64, 128)
  config.data.seeds = (0, 1)
  config.data.num_test = 500
  config.data.order_seed = 0

  config.model.name = "mlp"
  config.model.width = 128
  config.model.dropout = 0.0

  config.optim.name = "adam"
  config.optim.lr = (1e-3,)

  config.train.num_steps = 32_000
  config.train.batch_size = 64
  config.train.batch_policy = "replacement"
  config.train.steps_per_dispatch = 2000

  # The budget halved again and again, with each octave's 3/4 point, down to step 100:
  # 100, 125, 188, 250, 375, ..., 24000, 32000; a shorter train.num_steps gets the same
  # kind of grid (400 steps: 100, 150, 200, 300, 400).
  config.eval.grid = "octaves"
  config.eval.first_time = 100
  config.eval.num_samples = 500
  config.eval.sample_batch = 500
  config.eval.sampler = "ddim"
  config.eval.sampler_steps = 100
  config.eval.ddim_eta = 1.0
  config.eval.n_bootstrap = 1000
  config.eval.loss_noise_draws = 5
  # Frechet distance in pixel space to 1,000 spare digits: it drops to its plateau within
  # ~1,000 steps for every n. (The classifier-feature distance keeps improving slowly for
  # 30,000 steps on this data and hides that plateau.)
  config.eval.quality = "pixel_fd"
  config.eval.fid_num_sets = 1
  config.eval.fid_set_size = 1000
  config.eval.grid_runs = 5
  config.eval.grid_samples = 8

  config.report.tau_mem_threshold = 0.01
  # tau_gen when 90% of the quality's decrease is done: with n = 8 the samples can only
  # be 8 digits, so the plateau's height (not its time) depends on n.
  config.report.tau_gen_reference = "drop"

  if arg == "unet":
    # Paper-style U-Net scaled to 8x8 images: two levels (8x8, 4x4), attention on the
    # coarser one, width 16 (GroupNorm 8 groups).
    config.model.name = "unet"
    config.model.width = 16
    config.model.channel_mult = (1, 2)
    config.model.attention = (False, True)
    config.model.dropout = 0.0
  elif arg:
    raise ValueError(f"unknown digits config variant {arg!r}; expected '' or 'unet'")
  return config
