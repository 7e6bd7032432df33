"""Every key of a jaxdiff diffusion sweep, with its default and a one-line comment.

Other configs start from `base.get_config()` and change what differs. Swept values
(the n-grid, seeds, data blocks, learning rates) are tuples: every combination becomes
one run on the leading models axis of one compiled program. Override any key from the
command line, e.g.

  python -m jaxdiff.main --config=configs/digits.py --workdir=/tmp/digits \
      --config.data.n_train=8,32,128 --config.data.seeds=0 --config.train.num_steps=4000

The random-features study (experiment = "random_features") has its own keys, all in
configs/random_features.py.
"""

import ml_collections


def get_config():
  """The defaults: the paper's CelebA setting (SM A.1), sized for a GPU."""
  config = ml_collections.ConfigDict()
  # What to run: "diffusion" (the sweep trainer) or "random_features" (Sect. 3 study).
  config.experiment = "diffusion"
  # Root seed. A run's key is derived from (seed, the run's data.seeds value) only, so a
  # run gives the same numbers alone, inside any sweep, and on any number of devices.
  config.seed = 0

  # ---------------------------------------------------------------- data
  config.data = data = ml_collections.ConfigDict()
  # digits | gmm | gaussian | celeb_a | cifar10 | folder | npz | npy | tfds:NAME (any image
  # dataset of tensorflow-datasets, e.g. tfds:mnist; prepared with `tfds build`). Each is an
  # entry of jaxdiff/data's registry, which reads the data keys below (no defaults of its own).
  data.dataset = "celeb_a"
  # folder / npz / npy: the folder of image files (PNG/JPEG/BMP/TIFF, recursively, sorted by
  # path) or the array file; resized and centre-cropped to data.image_size as CelebA.
  data.path = ""
  # The n-grid: training-set sizes, strictly increasing. One run per (n, seed, index, lr).
  data.n_train = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
  # Seeds of the runs (model init, noise, batch order); the data subset does not depend on it.
  data.seeds = (0,)
  # Data blocks: run with index i trains on images [i*n, (i+1)*n) of the ordered pool
  # (the authors' `-i`); several indices give disjoint training sets.
  data.index = (0,)
  # Side of the square images (CelebA/CIFAR: resize shorter side, then center-crop).
  data.image_size = 32
  # Convert images to one grayscale channel (the paper) instead of RGB.
  data.grayscale = True
  # Held-out images for the test loss, taken from the end of the ordered pool.
  data.num_test = 2048
  # Order of the pool: -1 keeps the dataset's own order (the authors' first-n images);
  # a seed >= 0 applies a fixed permutation first.
  data.order_seed = -1
  # Subtract each run's own training mean (a scalar per channel), the paper's only preprocessing.
  data.center = True
  # Dimension of the synthetic data (gmm, gaussian).
  data.dim = 8
  # GMM: the two components are N(+mu 1_d, I) and N(-mu 1_d, I) (paper SM B: mu = 1).
  data.gmm_mean = 1.0
  # GMM / gaussian: size of the synthetic pool drawn once from data.order_seed (>= n + num_test).
  data.pool_size = 65536
  # gaussian: eigenvalues of the data covariance and their weights (a discrete spectrum).
  data.cov_eigs = (1.0,)
  data.cov_weights = (1.0,)
  # tensorflow-datasets data_dir ("" = TFDS default, ~/tensorflow_datasets).
  data.tfds_data_dir = ""

  # ---------------------------------------------------------------- model
  config.model = model = ml_collections.ConfigDict()
  # unet (paper SM A.1) | mlp (paper SM B residual MLP).
  model.name = "unet"
  # Base width W (U-Net channels at the first level; MLP hidden width).
  model.width = 32
  # U-Net channel multipliers per resolution level (the paper: 1, 2, 4).
  model.channel_mult = (1, 2, 4)
  # Self-attention at each level (the paper: the two coarsest).
  model.attention = (False, True, True)
  # Residual blocks per level in the encoder (the decoder has one more).
  model.num_res_blocks = 2
  # Attention heads.
  model.num_heads = 4
  # GroupNorm groups (channel counts must be divisible by it).
  model.num_groups = 8
  # Dropout before the second convolution of each residual block (the paper: 0.1).
  model.dropout = 0.1
  # MLP: number of residual blocks (paper SM B: 3).
  model.num_blocks = 3
  # MLP: class-conditional score network with this many classes (the data's labels; gmm:
  # the component) plus a null class for classifier-free guidance; 0 = unconditional.
  model.num_classes = 0
  # How convolutions run when a models axis is vmapped: native | unroll | im2col. Only
  # under train.models_axis = vmap (see there): native = XLA's grouped convolution,
  # unroll = the convolution loop (one plain convolution per run inside the vmapped step;
  # not the trainer's "unroll" strategy), im2col = patches and one batched matmul.
  model.conv_batching = "native"
  # Compute dtype of the U-Net's convolutions, matmuls and activations ("float32" |
  # "bfloat16"); parameters, gradients, optimizer state, norms' statistics, the softmax
  # and the output stay float32, and evaluation always runs the network in float32.
  model.dtype = "float32"
  # U-Net rematerialisation per ResBlock (jax.checkpoint), trading compute for memory:
  # none | convs (keep conv/projection outputs, recompute the rest) | full (keep only
  # block inputs; ~+1/3 FLOPs). `python -m jaxdiff.plan` shows what each one fits.
  model.remat = "none"

  # ---------------------------------------------------------------- diffusion
  config.diffusion = diffusion = ml_collections.ConfigDict()
  # Number of DDPM steps T.
  diffusion.num_steps = 1000
  # Linear beta schedule (paper SM A.1).
  diffusion.beta_min = 1e-4
  diffusion.beta_max = 2e-2
  # Training time indices are uniform in [min_train_index, T-1] (the authors: 1).
  diffusion.min_train_index = 1

  # ---------------------------------------------------------------- optimiser
  config.optim = optim = ml_collections.ConfigDict()
  # sgd (with momentum; the paper) | adam (paper SM A.3).
  optim.name = "sgd"
  # Learning rates; a tuple sweeps them as runs.
  optim.lr = (0.01,)
  # SGD momentum (PyTorch semantics: no dampening, no Nesterov).
  optim.momentum = 0.95
  # Adam moments.
  optim.b1 = 0.9
  optim.b2 = 0.999
  optim.eps = 1e-8
  # EMA of the parameters used for evaluation; 0 = off (the paper used none).
  optim.ema_decay = 0.0

  # ---------------------------------------------------------------- training
  config.train = train = ml_collections.ConfigDict()
  # Total optimiser steps per run.
  train.num_steps = 2_000_000
  # Batch size B.
  train.batch_size = 512
  # min: batch min(B, n), shuffled epochs without replacement (the paper);
  # replacement: batch B for every n, drawn with replacement; full: batch n (paper SM A.2).
  train.batch_policy = "min"
  # Conditional models: probability that a training label is replaced by the null class
  # (classifier-free guidance training). Not from the paper (SM B.3 does not state it);
  # 0.1 is in the range of Ho & Salimans (2022).
  train.label_dropout = 0.1
  # Most optimiser steps per dispatch (one lax.scan); chunks also end at evaluation times.
  train.steps_per_dispatch = 1000
  # The models axis (jaxdiff/models_axis.py): three keys, two layers. train.models_axis
  # and train.models_group shape the program (how a per-run step is lifted over a device's
  # runs); model.conv_batching only says what a vmapped convolution becomes.
  # How runs are laid out inside one device: auto | unroll | vmap (auto: unroll on CPU).
  # unroll = per-run copies (one copy of the whole step per run in the program: nothing
  # is vmapped, model.conv_batching has no effect); vmap = jax.vmap over the runs.
  train.models_axis = "auto"
  # Runs computed at once on a device (0: all of its runs); G > 0 runs groups of G one
  # after another in the same program: the memory of G runs (see python -m jaxdiff.plan).
  # Works with either train.models_axis.
  train.models_group = 0
  # Devices along the mesh's 'data' axis (splits one run's batch); the rest go to 'models'.
  train.data_parallel = 1
  # Save a checkpoint at least this often (seconds), besides every evaluation time.
  train.checkpoint_every_secs = 1800.0
  # Keep this many checkpoints (the latest ones).
  train.max_checkpoints = 2

  # ---------------------------------------------------------------- evaluation
  config.eval = evaluate = ml_collections.ConfigDict()
  # Explicit evaluation steps; empty = the grid below. The last step is always included.
  evaluate.times = ()
  # paper: the milestone grid of the paper's figures (paper.md 1.5) cut at num_steps;
  # log: num_times log-spaced steps between first_time and num_steps.
  evaluate.grid = "paper"
  evaluate.num_times = 40
  evaluate.first_time = 250
  # Generated samples per run and evaluation time (the paper: 10,000).
  evaluate.num_samples = 10_000
  # Samples generated together (bounds memory).
  evaluate.sample_batch = 1000
  # ddim | ddpm | em (Euler-Maruyama of the reverse SDE).
  evaluate.sampler = "ddim"
  # Sampler steps T' (the paper: 200 DDIM steps).
  evaluate.sampler_steps = 200
  # DDIM eta: 0 = deterministic (the paper), 1 = stochastic.
  evaluate.ddim_eta = 0.0
  # Conditional models: classifier-free guidance scale s, eps = eps(null) + s (eps(y) -
  # eps(null)); 1 = the conditional model, 0 = the unconditional one. Sample j is
  # generated for label j mod num_classes.
  evaluate.guidance = 1.0
  # Memorization threshold k on ||x - a1|| / ||x - a2|| (paper eq. 6).
  evaluate.k = 1 / 3
  # Further thresholds also reported (the paper: 1/2 and 1/4 do not change the scaling).
  evaluate.k_extra = (1 / 2, 1 / 4)
  # Bootstrap resamples for the f_mem interval.
  evaluate.n_bootstrap = 1000
  # OU time of the fixed-time train/test losses (paper Fig. 2 middle: 0.01).
  evaluate.loss_t = 0.01
  # Noise draws of the fixed-time losses.
  evaluate.loss_noise_draws = 5
  # Quality metric: auto | fid | classifier_fd | pixel_fd | gmm | none
  # (auto: fid when inception_weights is set, gmm for gmm data, else classifier_fd).
  evaluate.quality = "auto"
  # Path of pytorch-fid's Inception weights (pt_inception-2015-12-05-*.pth) or their .npz port.
  evaluate.inception_weights = ""
  # FID reference: disjoint sets of test images (the paper: 5 sets of 10,000).
  evaluate.fid_num_sets = 5
  evaluate.fid_set_size = 10_000
  # Where reference statistics and the substitute classifier are cached ("" = WORKDIR/cache);
  # a directory shared by several workdirs computes them once per dataset.
  evaluate.cache_dir = ""
  # Runs shown in the sample / nearest-neighbour grids, and samples per grid.
  evaluate.grid_runs = 4
  evaluate.grid_samples = 16
  # Optional per-evaluation outputs to compute besides the built-in ones (names registered
  # in jaxdiff.evaluation; each adds its metrics.jsonl fields). Empty: none.
  evaluate.extra_outputs = ()

  # ---------------------------------------------------------------- report
  config.report = report = ml_collections.ConfigDict()
  # tau_gen: first time quality is within this relative tolerance of its minimum, for good.
  report.tau_gen_tol = 0.1
  # tau_mem: first time f_mem exceeds this fraction with its bootstrap lower bound above 0.
  report.tau_mem_threshold = 0.01
  # tau_gen's tolerance band is tau_gen_tol times: "minimum" (|q_min|: within 10% of the
  # minimum) or "drop" (q_max - q_min: 90% of the decrease done; scale-free, for metrics
  # whose plateau height depends on n, like a Frechet distance at tiny n).
  report.tau_gen_reference = "minimum"
  # tau_gen: an absolute floor on that tolerance band (in quality units; e.g. ~0.02 nats for
  # the GMM KL, whose minimum is near 0).
  report.tau_gen_abs_tol = 0.0
  # Loss-gap onset: test - train loss beyond this many standard deviations of their noise.
  report.loss_gap_sigmas = 2.0
  # Phase diagram: boundaries at these multiples of tau_gen (paper Fig. 3: 1, 3, 8).
  report.phase_multipliers = (1.0, 3.0, 8.0)
  # Confidence level of the fitted intervals.
  report.conf = 0.95
  # Sensitivity table (the paper gives no thresholds): tau_mem is also measured with these
  # thresholds (with f_mem_lo > 0), with these fractions of each run's final f_mem, and as
  # the paper's strict f_mem > 0; tau_gen with these tolerances. Every exponent is fitted
  # under each, and the report's sentences are written from the whole table.
  report.sensitivity_thresholds = (0.005,)
  report.sensitivity_final_fractions = (0.1, 0.2)
  report.sensitivity_tau_gen_tols = (0.05, 0.2)
  # Bootstrap replicates and their random seed: over seeds where a sweep has >= 3 seeds or
  # data indices (else exponents get profile-likelihood intervals and the collapse
  # exponent resamples the runs within each n).
  report.n_bootstrap = 1000
  report.bootstrap_seed = 0
  # Write the report automatically at the end of the sweep.
  report.auto = True
  return config
