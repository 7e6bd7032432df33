"""The compiled programs of a sweep: init, a chunk of optimizer steps, the evaluation.

  programs = Programs(mesh, strategy, model, tx, schedule, step_spec, eval_spec, quality,
                      example, capacity, ema)
  state = programs.init(inputs)                                  # [M, ...] train states
  state = programs.chunk(state, inputs, pool, num_steps)         # num_steps steps per run
  outs = programs.evaluate(state, inputs, pool, test, qparams, step)

`train_step` and `evaluate.evaluate_run` are written for ONE run; each program lifts them
over the local slice of the models axis (`models_axis.lift`: unroll or vmap) inside a
`jax.shard_map` over the ('models', 'data') mesh, so runs never communicate. The trainer
(jaxdiff.train) and the planner (jaxdiff.plan) compile the same programs.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from jaxdiff import checkpointing
from jaxdiff import diffusion
from jaxdiff import evaluate
from jaxdiff import evaluation
from jaxdiff import models_axis
from jaxdiff import sharding
from jaxdiff import train_state
from jaxdiff.models import layers

MODELS, DATA = sharding.MODELS, sharding.DATA


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """Static settings of the train step."""
  batch: int            # static batch of the program
  batch_size: int       # configured B
  policy: str
  min_index: int
  data_parallel: int
  ema_decay: float
  num_classes: int = 0       # > 0: a class-conditional model, label num_classes = null
  label_dropout: float = 0.0  # probability of training on the null label instead


def train_step(state: train_state.TrainState, inputs: dict, pool: jax.Array, *, model, tx,
               schedule, spec: StepSpec) -> train_state.TrainState:
  """One optimizer step of ONE run (the eps-prediction loss on its own mini-batch).

  With a 'data' mesh axis larger than one, each device of the axis takes its slice of the
  batch (the draws are made for the whole batch first, so they do not depend on the
  layout) and the loss sums and gradients are summed over the axis.

  A class-conditional model (spec.num_classes > 0) sees each item's label from
  inputs["labels"], replaced by the null class with probability spec.label_dropout
  (classifier-free guidance training); its key is folded in separately, so the other
  draws are those of an unconditional run.
  """
  key = jax.random.fold_in(jax.random.fold_in(state.key, 1), state.step)
  k_batch, k_noise, k_drop = jax.random.split(key, 3)
  idx, weights, order = train_state.next_batch(state.order, inputs["n"], k_batch, spec.batch,
                                               spec.policy, spec.batch_size)
  x0 = pool[inputs["offset"] + idx] - inputs["mean"]
  t_idx, noise = diffusion.sample_train_noise(k_noise, x0, schedule, spec.min_index)
  y = ()
  if spec.num_classes > 0:
    dropped = jax.random.bernoulli(jax.random.fold_in(key, 7), spec.label_dropout, idx.shape)
    y = (jnp.where(dropped, spec.num_classes, inputs["labels"][idx]).astype(jnp.int32),)
  if spec.data_parallel > 1:
    shard = jax.lax.axis_index(DATA)
    size = spec.batch // spec.data_parallel
    take = lambda a: jax.lax.dynamic_slice_in_dim(a, shard * size, size)
    x0, weights, t_idx, noise = take(x0), take(weights), take(t_idx), take(noise)
    y = tuple(take(a) for a in y)
    k_drop = jax.random.fold_in(k_drop, shard)

  def loss_sum(params):
    eps_fn = lambda x, t: model.apply({"params": params}, x, t, *y, train=True,
                                      rngs={"dropout": k_drop})
    total, _ = diffusion.eps_loss(eps_fn, schedule, x0, weights, t_idx, noise)
    return total

  total, grads = jax.value_and_grad(loss_sum)(state.params)
  count = jnp.sum(weights)
  if spec.data_parallel > 1:
    total, count, grads = jax.lax.psum((total, count, grads), DATA)
  grads = jax.tree.map(lambda g: g / count, grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema = state.ema_params
  if ema is not None:
    d = spec.ema_decay
    ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                       ema_params=ema, order=order, loss_sum=state.loss_sum + total / count,
                       loss_count=state.loss_count + 1.0)


def _batched(fn, x: jax.Array, batch: int) -> jax.Array:
  """fn over the leading axis of x in chunks of `batch` (zero-padded), via lax.map."""
  n = x.shape[0]
  b = min(batch, n)
  pad = (-n) % b
  if pad:
    x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
  out = jax.lax.map(fn, x.reshape((-1, b) + x.shape[1:]))
  return out.reshape((-1,) + out.shape[2:])[:n]


class Programs:
  """The compiled pieces of a sweep: init, a chunk of steps, the evaluation."""

  def __init__(self, mesh, strategy, model, tx, schedule, step_spec: StepSpec,
               eval_spec: evaluate.EvalSpec, quality, example, capacity, ema: bool,
               quality_batch: int = 250, group: int = 0):
    self.mesh = mesh
    spec_m, spec_r = P(MODELS), P()
    lift = functools.partial(models_axis.lift, strategy=strategy, group=group)

    def init_local(inputs):
      one = lambda inp, _: train_state.create_train_state(
          model, tx, inp["key"], inp["lr"], inp["n"], example, capacity, ema)
      # Vmapped under every strategy: the init is parameter draws (the model's forward
      # pass inside flax's init is dead code to XLA), so batching them costs nothing and
      # gives the per-run copies' values exactly (tests/sharding_test.py), while per-run
      # copies would compile M inits (2 U-Net runs at W = 8: 7.2 s against 3.0 s).
      return models_axis.lift(one, "vmap", group)(inputs, None)

    self._init_local = init_local
    self.init = jax.jit(jax.shard_map(init_local, mesh=mesh, in_specs=(spec_m,),
                                      out_specs=spec_m, check_vma=False))

    def chunk_local(states, inputs, pool, num_steps):
      step = lambda args, pool_: train_step(args[0], args[1], pool_, model=model, tx=tx,
                                            schedule=schedule, spec=step_spec)
      lifted = models_axis.lift(step, strategy)
      run_steps = lambda st, inp: jax.lax.fori_loop(
          0, num_steps, lambda i, s: lifted((s, inp), pool), st)
      if not group:
        return run_steps(states, inputs)
      # A group does all the chunk's steps before the next group starts: the same results
      # (runs are independent), the memory of `group` runs, one slicing per chunk.
      return models_axis.map_groups(lambda args: run_steps(*args), (states, inputs), group)

    self.chunk = jax.jit(
        jax.shard_map(chunk_local, mesh=mesh, in_specs=(spec_m, spec_m, spec_r, spec_r),
                      out_specs=spec_m, check_vma=False),
        donate_argnums=0)

    def reset_local(states):
      return states.replace(loss_sum=jnp.zeros_like(states.loss_sum),
                            loss_count=jnp.zeros_like(states.loss_count))

    self.reset_losses = jax.jit(reset_local, donate_argnums=0,
                                out_shardings=sharding.models_sharding(mesh))

    eval_model = layers.float32_twin(model)  # evaluation always in float32 (layers.py)
    # The outputs this evaluation computes (jaxdiff.evaluation), in metrics-row order.
    self.outputs = outputs = evaluation.outputs_for(eval_spec)

    def eval_local(states, inputs, pool, test, qparams, step):
      def one(args, shared):
        state, inp = args
        params = state.ema_params if state.ema_params is not None else state.params
        key = jax.random.fold_in(jax.random.fold_in(state.key, 2), step)
        return evaluate.evaluate_run(eval_model, schedule, eval_spec, params, inp["n"],
                                     inp["offset"], inp["mean"], key, shared[0], shared[1],
                                     inp.get("labels"), inp.get("test_labels"))
      outs = lift(one)((states, inputs), (pool, test))
      shared = evaluation.Shared(
          quality=quality, qparams=qparams,
          batched=lambda fn, x: _batched(fn, x, quality_batch))
      for output in outputs:
        if output.stacked is not None:
          output.stacked(outs, shared)
      return outs

    self.evaluate = jax.jit(jax.shard_map(
        eval_local, mesh=mesh, in_specs=(spec_m, spec_m, spec_r, spec_r, spec_r, spec_r),
        out_specs=spec_m, check_vma=False))

  def abstract_state(self, inputs) -> Any:
    """Shapes and shardings of the stacked state (for restoring a checkpoint)."""
    shapes = jax.eval_shape(self.init, inputs)
    return checkpointing.abstract_with_sharding(shapes, sharding.models_sharding(self.mesh))
