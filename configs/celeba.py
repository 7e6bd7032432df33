"""The paper's main setting (Sect. 2, SM A.1): grayscale CelebA 32x32, U-Net W = 32.

  python -m jaxdiff.main --config=configs/celeba.py --workdir=DIR \
      --config.eval.inception_weights=/path/to/pt_inception-2015-12-05-6726825d.pth

Runs: n in {128, ..., 32768} (9 values) x 1 seed, all in one program; SGD lr 0.01,
momentum 0.95, batch min(n, 512); 2M steps; at the paper's ~40 milestones, 10,000 DDIM
samples (200 steps) per run for f_mem (k = 1/3) and FID against 5 sets of 10,000 held-out
images, and the train/test losses at t = 0.01 (2,048 test images).

Hardware: sized for GPUs (the paper needed ~50 GPU-hours per 2M-step model on 2 H100s).
The runs spread over the devices' 'models' mesh axis; on a device, 2 runs are computed at
a time (train.models_group = 2): XLA's estimate (`python -m jaxdiff.plan`) is ~21 GiB of
activations and temporaries per run at batch 512, so all 9 runs at once would need ~190
GiB. With `model.remat=convs` (3.5 GiB of saved activations a run instead of 20.3; +3.4%
FLOPs) plan estimates all 9 at once (`train.models_group=0`) at ~41 GiB, within an 80 GB
card (not yet measured on one: benchmarks/device_check.sh). Check memory with
`python -m jaxdiff.plan` and raise the group on larger devices; use
`launch/` for pods and clusters. `:small` shrinks it for a smoke test (2 values of n, 2,000 steps,
1,000 samples).

Expected (paper Figs 2-3): tau_gen ~ 1e5 steps for every n (FID plateau, FID ~ 35 at
n = 1024, tau = 190K); tau_mem ~ 300 n (n = 1024: f_mem = 0 at 190K, 47% at 1.62M); the
train/test loss gap opening at times proportional to n.

Data: tensorflow-datasets' celeb_a prepared beforehand (`tfds build celeb_a`; CelebA's
files come from Google Drive: see the error message for the manual_dir route).
"""

from configs import base


def get_config(arg: str | None = None):
  config = base.get_config()  # base holds the paper's CelebA setting
  config.data.dataset = "celeb_a"
  config.train.models_group = 2  # the memory of 2 runs per device (see above)
  if arg == "small":
    config.data.n_train = (128, 1024)
    config.train.num_steps = 2000
    config.eval.grid = "log"
    config.eval.num_times = 5
    config.eval.num_samples = 1000
    config.eval.fid_num_sets = 1
    config.eval.fid_set_size = 1000
  elif arg:
    raise ValueError(f"unknown celeba config variant {arg!r}; expected '' or 'small'")
  return config
