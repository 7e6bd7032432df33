"""One training step of the paper's U-Net: jaxdiff against a PyTorch re-statement, on CPU.

Claim checked (issue 16, item 5): a CPU user comparing jaxdiff with the obvious
alternative (the authors' PyTorch code, one job per n) sees the per-model-step ratio
printed here. Both sides do the same work per step: draw a batch of 64 images of 32x32x1
from a pool, draw t and the noise, x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, the
epsilon-prediction loss, its gradient, and one SGD step with momentum 0.95 (PyTorch
semantics), dropout 0.1 on.

  python benchmarks/vs_pytorch.py                      # W = 8 and 16, batch 64
  python benchmarks/vs_pytorch.py --widths 8 --repeats 7 --threads 2
  XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python benchmarks/vs_pytorch.py

The PyTorch model below is written for this benchmark (NCHW, torch.nn layers) with the
module names of the authors' state_dict, so that jaxdiff's parameters load into it through
`jaxdiff.interop`; the script first checks that both compute the same function (eval mode,
same parameters, max |difference| printed) before it times anything.

Timed variants, interleaved A B A B ... in one process (the machine is shared: ratios
measured together hold, absolute times drift):
  jaxdiff step   `programs.train_step` of one run, jitted with the state donated (the
                 trainer's own step: data order, gather from the pool, loss, SGD);
  jaxdiff model  the same model, loss and SGD update without the data-order machinery;
  torch          the PyTorch re-statement, same batch, torch.optim.SGD(momentum=0.95).
With --breakdown, the jaxdiff forward pass alone and forward + backward are timed too.

Needs torch (optional dependency; without it the script says so and exits 0).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def torch_unet(torch, width: int, channels: int = 1, channel_mult=(1, 2, 4),
               attention=(False, True, True), num_res_blocks: int = 2, num_heads: int = 4,
               num_groups: int = 8, dropout: float = 0.1, num_steps: int = 1000):
  """The paper's U-Net (jaxdiff.models.unet's docstring) as a torch.nn.Module, NCHW."""
  nn, F = torch.nn, torch.nn.functional

  class Conv3(nn.Module):  # GroupNorm -> SiLU -> (Dropout2d) -> Conv3x3
    def __init__(self, cin, cout, p):
      super().__init__()
      self.norm = nn.GroupNorm(num_groups, cin)
      self.conv = nn.Conv2d(cin, cout, 3, padding=1)
      self.p = p

    def forward(self, x):
      h = F.silu(self.norm(x))
      if self.p:
        h = F.dropout2d(h, self.p, self.training)
      return self.conv(h)

  class Attention(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.group_norm = nn.GroupNorm(num_groups, c)
      self.mhsa = nn.MultiheadAttention(c, num_heads, batch_first=True)

    def forward(self, x):
      b, c, hh, ww = x.shape
      seq = self.group_norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
      out = self.mhsa(seq, seq, seq, need_weights=False)[0]
      return x + out.transpose(1, 2).reshape(b, c, hh, ww)

  class Block(nn.Module):
    def __init__(self, cin, cout, attend):
      super().__init__()
      self.block1 = Conv3(cin, cout, 0.0)
      self.dense = nn.Linear(4 * width, cout)
      self.block2 = Conv3(cout, cout, dropout)
      self.res_conv = nn.Conv2d(cin, cout, 1) if cin != cout else None
      self.attention = Attention(cout) if attend else None

    def forward(self, x, emb):
      h = self.block1(x) + self.dense(F.silu(emb))[:, :, None, None]
      skip = x if self.res_conv is None else self.res_conv(x)
      h = self.block2(h) + skip
      return h if self.attention is None else self.attention(h)

  class Down(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.downsample = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x, emb):
      return self.downsample(x)

  class Up(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.upsample = nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"),
                                    nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x, emb):
      return self.upsample(x)

  class UNet(nn.Module):
    def __init__(self):
      super().__init__()
      half = width // 2
      freq = torch.exp(torch.arange(half, dtype=torch.float32)
                       * (-math.log(10000) / (half - 1)))
      arg = torch.arange(num_steps, dtype=torch.float32)[:, None] * freq[None, :]
      self.time_embeddings = nn.Module()
      self.time_embeddings.time_mlp = nn.Sequential(
          nn.Embedding.from_pretrained(torch.cat([arg.sin(), arg.cos()], 1)),
          nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, 4 * width))
      self.init_conv = nn.Conv2d(channels, width, 3, padding=1)
      chans = [width * m for m in channel_mult]
      kept, c = [width], width
      self.encoder_blocks = nn.ModuleList()
      for level, cout in enumerate(chans):
        for _ in range(num_res_blocks):
          self.encoder_blocks.append(Block(c, cout, attention[level]))
          c = cout
          kept.append(c)
        if level != len(chans) - 1:
          self.encoder_blocks.append(Down(c))
          kept.append(c)
      self.bottleneck_blocks = nn.ModuleList([Block(c, c, True), Block(c, c, False)])
      self.decoder_blocks = nn.ModuleList()
      for level in reversed(range(len(chans))):
        for _ in range(num_res_blocks + 1):
          self.decoder_blocks.append(Block(c + kept.pop(), chans[level], attention[level]))
          c = chans[level]
        if level:
          self.decoder_blocks.append(Up(c))
      self.final_block = Conv3(width, channels, 0.0)

    def forward(self, x, t):
      emb = self.time_embeddings.time_mlp(t)
      h = self.init_conv(x)
      skips = [h]
      for layer in self.encoder_blocks:
        h = layer(h, emb)
        skips.append(h)
      for layer in self.bottleneck_blocks:
        h = layer(h, emb)
      for layer in self.decoder_blocks:
        if isinstance(layer, Block):
          h = torch.cat([h, skips.pop()], 1)
        h = layer(h, emb)
      return self.final_block(h)

  return UNet()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--widths", default="8,16")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
  parser.add_argument("--steps", type=int, default=3, help="steps per timed round")
  parser.add_argument("--threads", type=int, default=0,
                      help="torch intra-op threads (0: torch's default)")
  parser.add_argument("--breakdown", action="store_true",
                      help="also time jaxdiff's forward and forward+backward alone")
  args = parser.parse_args()
  try:
    import torch
  except ImportError:
    print("torch is not installed: nothing to compare (pip install torch)")
    return
  import jax
  import jax.numpy as jnp
  import optax

  from configs import base
  from jaxdiff import diffusion, interop
  from jaxdiff import programs as programs_lib
  from jaxdiff import runs as runs_lib
  from jaxdiff import train_state as ts
  from jaxdiff.models.unet import make_unet

  if args.threads:
    torch.set_num_threads(args.threads)
  load = os.getloadavg()
  print(f"jax {jax.__version__} ({jax.devices()[0].device_kind}, XLA_FLAGS="
        f"{os.environ.get('XLA_FLAGS', '')!r}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {os.cpu_count()} CPUs, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
  b, s = args.batch, args.image_size
  rng = np.random.default_rng(0)
  pool_np = rng.uniform(-0.5, 0.5, size=(4 * b, s, s, 1)).astype(np.float32)
  results = []
  for width in (int(w) for w in args.widths.split(",")):
    config = base.get_config()
    config.model.width = width
    model = make_unet(config.model, config.diffusion.num_steps)
    tx = ts.make_optimizer(config.optim)
    schedule = diffusion.schedule_from_config(config.diffusion)
    spec = programs_lib.StepSpec(batch=b, batch_size=b, policy="min", min_index=1,
                                 data_parallel=1, ema_decay=0.0)
    n = pool_np.shape[0]
    inputs = dict(n=jnp.int32(n), offset=jnp.int32(0), mean=jnp.zeros((1,)),
                  lr=jnp.float32(0.01), key=runs_lib.run_key(0, 0))
    pool = jnp.asarray(pool_np)
    state = ts.create_train_state(model, tx, inputs["key"], 0.01, n,
                                  jnp.zeros((1, s, s, 1)), n, False)
    step = jax.jit(lambda st: programs_lib.train_step(st, inputs, pool, model=model, tx=tx,
                                                      schedule=schedule, spec=spec),
                   donate_argnums=0)
    abar = schedule.alpha_bars

    def model_loss(params, x0, t, eps, key):
      a = abar[t][:, None, None, None]
      xt = jnp.sqrt(a) * x0 + jnp.sqrt(1 - a) * eps
      out = model.apply({"params": params}, xt, t, train=True, rngs={"dropout": key})
      return jnp.mean(jnp.square(out - eps))

    @functools_partial_donate
    def bare(params, opt_state, key):
      k1, k2, k3, k4 = jax.random.split(key, 4)
      idx = jax.random.randint(k1, (b,), 0, n)
      t = jax.random.randint(k2, (b,), 1, config.diffusion.num_steps)
      eps = jax.random.normal(k3, (b, s, s, 1))
      grads = jax.grad(model_loss)(params, pool[idx], t, eps, k4)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    bare_params = jax.tree.map(jnp.copy, state.params)
    bare_opt = jax.tree.map(jnp.copy, state.opt_state)
    fwd = jax.jit(lambda p, x, t: model.apply({"params": p}, x, t, train=True,
                                              rngs={"dropout": jax.random.PRNGKey(0)}))
    fwd_bwd = jax.jit(jax.grad(model_loss))

    # The PyTorch side, with jaxdiff's initial parameters (same function, checked).
    tmodel = torch_unet(torch, width)
    sd = interop.torch_state_dict_from_params(state.params, width)  # numpy, read-only views
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()},
                           strict=True)
    xt_np = rng.standard_normal((4, s, s, 1)).astype(np.float32)
    t_np = np.array([1, 10, 300, 999])
    ref = np.asarray(model.apply({"params": state.params}, jnp.asarray(xt_np),
                                 jnp.asarray(t_np)))
    tmodel.eval()
    with torch.no_grad():
      got = tmodel(torch.from_numpy(xt_np.transpose(0, 3, 1, 2)),
                   torch.from_numpy(t_np)).numpy().transpose(0, 2, 3, 1)
    diff = float(np.abs(got - ref).max())
    tmodel.train()
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.95)
    tpool = torch.from_numpy(pool_np.transpose(0, 3, 1, 2).copy())
    tabar = torch.from_numpy(np.asarray(abar))

    def torch_step():
      idx = torch.randint(0, n, (b,))
      t = torch.randint(1, config.diffusion.num_steps, (b,))
      x0 = tpool[idx]
      eps = torch.randn_like(x0)
      a = tabar[t][:, None, None, None]
      out = tmodel(a.sqrt() * x0 + (1 - a).sqrt() * eps, t)
      loss = torch.mean((out - eps) ** 2)
      topt.zero_grad(set_to_none=True)
      loss.backward()
      topt.step()

    holder = {"state": state, "params": bare_params, "opt": bare_opt,
              "key": jax.random.PRNGKey(1)}
    x_fixed = pool[:b]
    t_fixed = jnp.full((b,), 300, jnp.int32)
    eps_fixed = jnp.zeros_like(x_fixed)

    def run_step():
      holder["state"] = step(holder["state"])
      jax.block_until_ready(holder["state"])

    def run_bare():
      holder["key"], k = jax.random.split(holder["key"])
      holder["params"], holder["opt"] = bare(holder["params"], holder["opt"], k)
      jax.block_until_ready(holder["params"])

    def run_fwd():
      jax.block_until_ready(fwd(holder["params"], x_fixed, t_fixed))

    def run_fwd_bwd():
      jax.block_until_ready(fwd_bwd(holder["params"], x_fixed, t_fixed, eps_fixed,
                                    jax.random.PRNGKey(2)))

    variants = {"jaxdiff step": run_step, "jaxdiff model": run_bare, "torch": torch_step}
    if args.breakdown:
      variants["jaxdiff fwd"] = run_fwd
      variants["jaxdiff fwd+bwd"] = run_fwd_bwd
    compile_s = {}
    for name, fn in variants.items():  # compile / warm up
      t0 = time.perf_counter()
      fn()
      compile_s[name] = time.perf_counter() - t0
    times = {name: [] for name in variants}
    for _ in range(args.repeats):
      for name, fn in variants.items():
        t0 = time.perf_counter()
        for _ in range(args.steps):
          fn()
        times[name].append((time.perf_counter() - t0) / args.steps)
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    print(f"W={width}, {s}x{s}x1, batch {b}: torch vs jaxdiff forward max|diff| = "
          f"{diff:.2e}; first call (compile) jaxdiff step {compile_s['jaxdiff step']:.1f} s")
    for name, ms in med.items():
      spread = 1e3 * (max(times[name]) - min(times[name]))
      print(f"  {name:16s} {ms:9.1f} ms/step (median of {args.repeats} rounds of "
            f"{args.steps}; spread {spread:.0f} ms)  {ms / med['torch']:.2f}x torch")
    results.append((width, med))
  load = os.getloadavg()
  print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
  for width, med in results:
    print(f"W={width}: jaxdiff step / torch step = {med['jaxdiff step'] / med['torch']:.2f}x "
          f"(model only {med['jaxdiff model'] / med['torch']:.2f}x)")


def functools_partial_donate(fn):
  import jax
  return jax.jit(fn, donate_argnums=(0, 1))


if __name__ == "__main__":
  main()
