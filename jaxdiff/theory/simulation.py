"""Gradient-descent training of the random-features score model, as in the paper's numerics.

Paper SM D / eq. 9: full batch over the n training points, one fresh noise draw per point
per step, A(0) = 0, A <- A - eta grad L_train with

  L_train = (1 / (d n)) sum_nu || sqrt(Delta_t) s_A(x_t^nu) + xi^nu ||^2,

and time tau = k eta / d^2 with the 1/sqrt(p) parameterisation of eq. 7 (Adam optional).

One jitted program trains every run: seeds on a vmapped leading axis, and for each seed
the runs of the n-grid on nested training sets x[:n_1] within ... within x[:n_R] that
share W and the noise of their common points (common random numbers). The features
sigma(W x_t / sqrt d) of a step are computed once for the largest set and sliced for the
others, so the cost per step is that of the largest run plus two matmuls per run, with no
padding.

Losses are evaluated exactly as quadratic forms in A (eqs 55, 164, 165, 218) with moment
matrices estimated once per run by Monte Carlo (empirical.mc_*): the train loss from
N noise draws of each training point (the paper's estimator used N = 100; the study takes
more for small n, as the same U also drives the closed-form curves) and the test loss
and score error from fresh samples. The constant E||xi||^2/d is taken at its exact
value 1 (a control variate), which removes the dominant sampling noise.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdiff.errors import ConfigError
from jaxdiff.models import random_features


@dataclasses.dataclass(frozen=True)
class TrainSpec:
  """Static description of one simulation program.

  Attributes:
    ns: training-set sizes, strictly increasing (nested sets).
    t: diffusion time.
    lr: learning rate eta (paper parameterisation; tau = k eta / d^2).
    optimizer: "gd" or "adam".
    activation: name of sigma.
  """

  ns: tuple[int, ...]
  t: float
  lr: float
  optimizer: str = "gd"
  activation: str = "tanh"


def make_optimizer(name: str, lr: float) -> optax.GradientTransformation:
  if name == "gd":
    return optax.sgd(lr)
  if name == "adam":
    return optax.adam(lr)
  raise ConfigError("rf.optimizer", name, "'gd' or 'adam'")


def train_grads(a, w, x, xi, spec: TrainSpec):
  """Gradients of the one-draw train loss of every run of one seed.

  Args:
    a: [R, d, p] the A of each run.
    w: [p, d] first layer.
    x: [n_max, d] training pool (run r uses x[:n_r]).
    xi: [n_max, d] this step's noise.
    spec: the TrainSpec.

  Returns:
    (grads [R, d, p], losses [R]) of L = (1/(d n)) sum ||sqrt(Delta) s_A(x_t) + xi||^2.
  """
  p, d = w.shape
  delta = -math.expm1(-2 * spec.t)
  xt = math.exp(-spec.t) * x + math.sqrt(delta) * xi
  phi = random_features.features(w, xt, spec.activation)  # [n_max, p]
  grads, losses = [], []
  for r, n in enumerate(spec.ns):
    ph = phi[:n]
    res = math.sqrt(delta) * (ph @ a[r].T) / math.sqrt(p) + xi[:n]  # [n, d]
    losses.append(jnp.sum(res * res) / (d * n))
    grads.append(2 * math.sqrt(delta) / (d * n * math.sqrt(p)) * (res.T @ ph))
  return jnp.stack(grads), jnp.stack(losses)


def make_advance(spec: TrainSpec) -> Callable:
  """A jitted advance(state, w, x, num_steps) -> state over the seeds axis.

  state = (a [S, R, d, p], opt_state, keys [S]); num_steps is traced, so every chunk
  length runs the same compiled program.
  """
  opt = make_optimizer(spec.optimizer, spec.lr)

  def one_seed(a, opt_state, key, w, x, num_steps):
    def body(_, carry):
      a, opt_state, key = carry
      key, sub = jax.random.split(key)
      xi = jax.random.normal(sub, x.shape, x.dtype)
      g, _ = train_grads(a, w, x, xi, spec)
      updates, opt_state = opt.update(g, opt_state, a)
      return optax.apply_updates(a, updates), opt_state, key

    return jax.lax.fori_loop(0, num_steps, body, (a, opt_state, key))

  @jax.jit
  def advance(state, w, x, num_steps):
    a, opt_state, keys = state
    return jax.vmap(one_seed, in_axes=(0, 0, 0, 0, 0, None))(a, opt_state, keys, w, x, num_steps)

  return advance


def init_state(key: jax.Array, num_seeds: int, d: int, p: int, spec: TrainSpec):
  """A = 0 for every (seed, run), the optimizer state and one noise key per seed."""
  a = jnp.zeros((num_seeds, len(spec.ns), d, p), jnp.float32)
  opt = make_optimizer(spec.optimizer, spec.lr)
  opt_state = jax.vmap(opt.init)(a)
  return a, opt_state, jax.random.split(key, num_seeds)


class Moments(NamedTuple):
  """Moment matrices of the losses, stacked over seeds (and runs for the train ones).

  Attributes:
    u_train: [S, R, p, p], v_train: [S, R, p, d] (N noise draws of the training points).
    u_test: [S, p, p], v_test, c_test: [S, p, d], e_test: [S] (fresh samples from P_t).
  """

  u_train: jax.Array
  v_train: jax.Array
  u_test: jax.Array
  v_test: jax.Array
  c_test: jax.Array
  e_test: jax.Array


@functools.partial(jax.jit, static_argnames=("t",))
def evaluate(a, m: Moments, t: float):
  """Train/test losses and score error of every (seed, run) [S, R] each (quadratic forms)."""
  delta = -math.expm1(-2 * t)
  p, d = a.shape[-1], a.shape[-2]
  b = a / math.sqrt(p)  # [S, R, d, p]

  def quad(b, u):  # Tr(B U B^T)
    return jnp.einsum("srdp,srpq,srdq->sr", b, u, b)

  u_test = jnp.broadcast_to(m.u_test[:, None], b.shape[:2] + m.u_test.shape[-2:])
  lin = lambda v: jnp.einsum("srdp,srpd->sr", b, v)  # Tr(B V)
  bcast = lambda v: jnp.broadcast_to(v[:, None], b.shape[:2] + v.shape[-2:])
  train = 1.0 + (delta * quad(b, m.u_train) + 2 * math.sqrt(delta) * lin(m.v_train)) / d
  qt = quad(b, u_test)
  test = 1.0 + (delta * qt + 2 * math.sqrt(delta) * lin(bcast(m.v_test))) / d
  score = (qt + 2 * lin(bcast(m.c_test)) + m.e_test[:, None]) / d
  return {"train": train, "test": test, "gen": test - train, "score": score}


def eval_steps(num_steps: int, num_times: int) -> np.ndarray:
  """0 and about num_times log-spaced integer steps in [1, num_steps], num_steps included."""
  steps = np.unique(np.round(np.geomspace(1, num_steps, num_times)).astype(np.int64))
  return np.concatenate([[0], steps])


def simulate(key: jax.Array, w, x, moments: Moments, spec: TrainSpec, steps: Sequence[int],
             progress: Callable | None = None) -> dict[str, np.ndarray]:
  """Trains every (seed, run) and evaluates the losses at the given steps.

  Args:
    key: PRNG key of the training noise.
    w: [S, p, d] first layers; x: [S, n_max, d] training pools.
    moments: the loss moments (see Moments).
    spec: the TrainSpec.
    steps: increasing evaluation steps (0 allowed).
    progress: optional wrapper of the iterator over steps (e.g. tqdm).

  Returns:
    {"step": [T], "train"/"test"/"gen"/"score": [T, S, R]} as numpy arrays.
  """
  num_seeds, p, d = w.shape
  state = init_state(key, num_seeds, d, p, spec)
  advance = make_advance(spec)
  rows = {k: [] for k in ("train", "test", "gen", "score")}
  done = 0
  it = progress(steps) if progress is not None else steps
  for k in it:
    if k > done:
      state = advance(state, w, x, jnp.int32(k - done))
      done = int(k)
    out = jax.device_get(evaluate(state[0], moments, spec.t))
    if not np.all(np.isfinite(out["train"])):
      raise ConfigError("rf.lr", spec.lr, "a learning rate for which gradient descent is "
                        f"stable (the losses diverged by step {k})")
    for name in rows:
      rows[name].append(out[name])
  res = {name: np.stack(v) for name, v in rows.items()}
  res["step"] = np.asarray(steps, np.int64)
  return res
