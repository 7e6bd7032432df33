"""The training state of ONE run, its optimizer and its data order.

The trainer stacks M of these along a leading models axis; nothing here knows about it.
The state holds everything a bit-identical resume needs: parameters, optimizer moments
(the authors' resume lost the SGD momentum), the position in the current shuffled epoch
(the authors' resume restarted the data order), the run's key and the step. Per-step keys
are fold_in(key, step), so no key is carried from step to step.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxdiff.errors import ConfigError

OPTIMIZERS = ("sgd", "adam")


class DataOrder(flax.struct.PyTreeNode):
  """A run's position in its shuffled epochs (a PyTorch DataLoader with shuffle=True).

  perm: [capacity] int32, a permutation of [0, n) in its first n entries.
  pos: int32, the next unread entry; pos >= n means the epoch is over.
  """
  perm: jax.Array
  pos: jax.Array


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array          # int32 [], optimizer steps done
  params: Any
  opt_state: Any
  ema_params: Any          # None when optim.ema_decay == 0
  key: jax.Array           # the run's key (fold_in(PRNGKey(config.seed), seed))
  order: DataOrder
  loss_sum: jax.Array      # float32 [], training loss summed since the last evaluation
  loss_count: jax.Array    # float32 [], steps summed in loss_sum


def make_optimizer(optim_cfg) -> optax.GradientTransformation:
  """SGD with momentum (PyTorch semantics) or Adam, with the learning rate in the state.

  optax.sgd(lr, momentum) is PyTorch's SGD without dampening/Nesterov/weight decay:
  buf <- momentum * buf + g; p <- p - lr * buf. The learning rate is injected as a
  hyperparameter so that each run on the models axis can have its own.
  """
  name = optim_cfg.name
  if name == "sgd":
    return optax.inject_hyperparams(optax.sgd)(learning_rate=0.0, momentum=optim_cfg.momentum)
  if name == "adam":
    return optax.inject_hyperparams(optax.adam)(
        learning_rate=0.0, b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps)
  raise ConfigError("optim.name", name, f"one of {OPTIMIZERS}")


def set_learning_rate(opt_state, lr):
  hyper = dict(opt_state.hyperparams)
  hyper["learning_rate"] = jnp.asarray(lr, jnp.float32)
  return opt_state._replace(hyperparams=hyper)


def init_params(model, key: jax.Array, example: jax.Array) -> Any:
  """Initialises one model's parameters (the key is the run's init key)."""
  t = jnp.zeros((example.shape[0],), jnp.int32)
  variables = model.init({"params": key, "dropout": key}, example, t, train=False)
  return variables["params"]


def create_train_state(model, tx: optax.GradientTransformation, key: jax.Array, lr,
                       n, example: jax.Array, capacity: int, ema: bool) -> TrainState:
  """The initial state of one run.

  Args:
    key: the run's key; the parameters are initialised from fold_in(key, 0), so runs with
      the same seed start from the same parameters whatever their n.
    lr: the run's learning rate (traced).
    n: the run's training-set size (traced); the first step starts a new epoch.
    example: one input batch [b, ...] giving the data shape.
    capacity: static size of the data-order permutation (>= every n).
  """
  params = init_params(model, jax.random.fold_in(key, 0), example)
  opt_state = set_learning_rate(tx.init(params), lr)
  order = DataOrder(perm=jnp.arange(capacity, dtype=jnp.int32),
                    pos=jnp.asarray(n, jnp.int32))  # pos >= n: reshuffle at the first step
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
      ema_params=jax.tree.map(jnp.copy, params) if ema else None, key=key, order=order,
      loss_sum=jnp.zeros((), jnp.float32), loss_count=jnp.zeros((), jnp.float32))


def next_batch(order: DataOrder, n: jax.Array, key: jax.Array, batch: int, policy: str,
               batch_size: int) -> tuple[jax.Array, jax.Array, DataOrder]:
  """The indices (into the run's training set) and weights of the next batch.

  Policies (train.batch_policy):
    min: shuffled epochs without replacement with batch b = min(B, n), the last batch of
      an epoch holding the n mod b leftovers (PyTorch DataLoader, drop_last=False). A run
      with n <= B trains full-batch.
    replacement: B indices drawn uniformly with replacement from [0, n).
    full: all n images every step.

  Args:
    batch: the static batch of the compiled program (>= this run's batch).
    batch_size: the configured B.

  Returns:
    (indices [batch] int32, weights [batch] float32 (0 on unused slots), new order).
  """
  slots = jnp.arange(batch, dtype=jnp.int32)
  if policy == "replacement":
    idx = jax.random.randint(key, (batch,), 0, n)
    return idx, (slots < batch_size).astype(jnp.float32), order
  if policy == "full":
    return slots, (slots < n).astype(jnp.float32), order
  if policy != "min":
    raise ValueError(f"unknown batch policy {policy!r}")
  capacity = order.perm.shape[0]

  def reshuffle(_):
    # Sorting uniform keys with the entries >= n pushed last gives a uniformly random
    # permutation of [0, n) in the first n places, with a static shape for any n.
    u = jax.random.uniform(key, (capacity,))
    u = jnp.where(jnp.arange(capacity) < n, u, 2.0)
    return DataOrder(perm=jnp.argsort(u).astype(jnp.int32), pos=jnp.zeros((), jnp.int32))

  order = jax.lax.cond(order.pos >= n, reshuffle, lambda _: order, None)
  b = jnp.minimum(batch_size, n)
  padded = jnp.concatenate([order.perm, jnp.zeros((batch,), jnp.int32)])
  idx = jax.lax.dynamic_slice(padded, (order.pos,), (batch,))
  valid = (slots < b) & (order.pos + slots < n)
  idx = jnp.where(valid, idx, 0)
  return idx, valid.astype(jnp.float32), order.replace(pos=order.pos + b)
