"""CIFAR-10 32x32 (not in the paper): the CelebA protocol on another image distribution.

  python -m jaxdiff.main --config=configs/cifar.py --workdir=DIR \
      --config.eval.inception_weights=/path/to/pt_inception-2015-12-05-6726825d.pth
  python -m jaxdiff.main --config=configs/cifar.py:rgb --workdir=DIR    # colour images

Grayscale by default like the paper's CelebA; `:rgb` keeps the 3 colour channels (the
U-Net's input/output channels follow the data). The pool is the 50,000 training images
followed by the 10,000 test images (TFDS order); the last 2,048 are held out for the test
loss, and FID reference sets come from the images no run trains on. n up to 16,384 so that
5 reference sets of 5,000 images remain.

Hardware: GPUs, as configs/celeba.py (2 runs computed at a time per device). Expected: the same two timescales (tau_gen
independent of n, tau_mem growing with n); CIFAR-10's more varied images should push
tau_mem later than CelebA's at equal n. Without Inception weights the quality metric is a
Frechet distance in the features of a classifier trained on CIFAR-10 labels (labelled as
such, not FID).

Data: `tfds build cifar10` beforehand.
"""

from configs import base


def get_config(arg: str | None = None):
  config = base.get_config()
  config.data.dataset = "cifar10"
  config.train.models_group = 2  # ~21 GiB of activations per run at batch 512
  config.data.n_train = (128, 256, 512, 1024, 2048, 4096, 8192, 16384)
  config.eval.fid_set_size = 5000
  if arg == "rgb":
    config.data.grayscale = False
  elif arg:
    raise ValueError(f"unknown cifar config variant {arg!r}; expected '' or 'rgb'")
  return config
