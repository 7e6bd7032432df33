"""Expands a study (widths x n-grid x seeds x data blocks) into jaxdiff jobs and runs them.

Runs that share an architecture train in ONE program on its models axis, so a study has
one job per width (a width is a different program); each job has its own workdir,
ROOT/W<width>, and the report combines them (the phase diagram and the width scaling
need several widths):

  python launch/sweep.py --study=fig3 --root=/shared/jaxdiff/fig3 --dry_run
  python launch/sweep.py --study=fig3 --root=/shared/jaxdiff/fig3 --backend=slurm \
      --slurm_args="--nodes=2 --gpus-per-node=8"
  python launch/sweep.py --study=fig3 --root=/mnt/jaxdiff/fig3 --backend=tpu \
      --tpu_args="--name=jaxdiff-v4 --zone=us-central2-b --type=v4-32"
  python launch/sweep.py --config=configs/digits.py --widths=64,128 --n_train=8,32,128 \
      --seeds=0,1 --root=/tmp/digits_widths --set=train.num_steps=8000

`--dry_run` prints the exact commands, one per line: the jobs, then the report command.
Backends: local (the jobs one after another on this machine, then the report), slurm
(`sbatch launch/slurm_gpu.sh ...` per job, and a report job that waits for them), tpu
(`launch/tpu_pod.sh ...` per job on one TPU slice, one after another, then the report on
worker 0). Every job's config (with its overrides) is loaded and validated here first, so a
typo fails before anything is submitted. Rerunning the same command resumes every job.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import subprocess
import sys
from typing import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

BACKENDS = ("local", "slurm", "tpu")


class UsageError(Exception):
  """A study that cannot be expanded (the message says which option to use)."""


@dataclasses.dataclass(frozen=True)
class Study:
  """Widths x n-grid x seeds x data blocks of one config, plus overrides for every job."""
  config: str
  widths: tuple[int, ...]
  n_train: tuple[int, ...]
  seeds: tuple[int, ...] = (0,)
  index: tuple[int, ...] = (0,)
  overrides: tuple[tuple[str, str], ...] = ()


# The paper's Fig. 3: CelebA 32x32 grayscale, U-Net W in {8, 16, 32, 48, 64}, n = 128 ...
# 32768 (paper.md 1.2, 1.8), SGD 0.01 / 0.95, batch min(n, 512): configs/celeba.py.
PRESETS = {
    "fig3": Study(config="configs/celeba.py", widths=(8, 16, 32, 48, 64),
                  n_train=tuple(128 * 2**i for i in range(9))),
}


@dataclasses.dataclass(frozen=True)
class Job:
  width: int
  workdir: str
  args: tuple[str, ...]  # the arguments of `python -m jaxdiff.main`


def _csv(value: Sequence) -> str:
  return ",".join(str(v) for v in value)


def expand(study: Study, root: str) -> list[Job]:
  """One job per width; its runs (n x seeds x index) share the models axis."""
  jobs = []
  for width in study.widths:
    workdir = os.path.join(root, f"W{width}")
    args = [f"--config={study.config}", f"--workdir={workdir}",
            f"--config.model.width={width}", f"--config.data.n_train={_csv(study.n_train)}",
            f"--config.data.seeds={_csv(study.seeds)}", f"--config.data.index={_csv(study.index)}"]
    args += [f"--config.{k}={v}" for k, v in study.overrides]
    jobs.append(Job(width, workdir, tuple(args)))
  return jobs


def load_config(args: Sequence[str]):
  """The config a `python -m jaxdiff.main ARGS` command would run, parsed the same way."""
  from absl import flags
  from ml_collections import config_flags
  argv = ["jaxdiff.main", *args]
  fv = flags.FlagValues()
  # The override flags (--config.x.y) are found in the argv given here, not sys.argv.
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True,
                                  sys_argv=argv)
  flags.DEFINE_string("workdir", None, "", flag_values=fv)
  fv(argv)
  return fv.config


def check_jobs(jobs: Sequence[Job]) -> None:
  """Loads and validates every job's config; raises ConfigError (or a parse error)."""
  from jaxdiff import validation
  cwd = os.getcwd()
  os.chdir(ROOT)  # config paths are relative to the repository
  try:
    for job in jobs:
      validation.validate_sweep(load_config(job.args))
  finally:
    os.chdir(cwd)


def report_args(jobs: Sequence[Job], root: str) -> list[str]:
  return [f"--workdir={j.workdir}" for j in jobs] + [f"--out={os.path.join(root, 'report')}"]


def commands(jobs: Sequence[Job], root: str, backend: str, *, python: str = "python",
             slurm_args: str = "", tpu_args: str = "") -> list[list[str]]:
  """The commands of a study: one per job, then the report command."""
  rep = report_args(jobs, root)
  if backend == "local":
    return ([[python, "-m", "jaxdiff.main", *j.args] for j in jobs]
            + [[python, "-m", "jaxdiff.report", *rep]])
  if backend == "slurm":
    extra = shlex.split(slurm_args)
    out = [["sbatch", f"--job-name=jaxdiff-W{j.width}", *extra, "launch/slurm_gpu.sh", *j.args]
           for j in jobs]
    # Submitted with --dependency=afterok:<the jobs' ids> when not a dry run.
    return out + [["sbatch", "--job-name=jaxdiff-report", "--nodes=1", "--ntasks=1",
                   f"--wrap={shlex.join([python, '-m', 'jaxdiff.report', *rep])}"]]
  if backend == "tpu":
    extra = shlex.split(tpu_args)
    out = [["launch/tpu_pod.sh", *extra, "--", *j.args] for j in jobs]
    return out + [["launch/tpu_pod.sh", *extra, "--worker=0", "--module=jaxdiff.report", "--",
                   *rep]]
  raise ValueError(f"unknown backend {backend!r}")


def _ints(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(v) for v in text.split(",") if v.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _override(text: str) -> tuple[str, str]:
  key, sep, value = text.partition("=")
  if not sep or not key:
    raise argparse.ArgumentTypeError(f"expected KEY=VALUE (a config key), got {text!r}")
  return key.removeprefix("--").removeprefix("config."), value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="launch/sweep.py", description=__doc__.split("\n\n")[0])
  p.add_argument("--study", choices=sorted(PRESETS), help="a built-in study (fig3: the "
                 "paper's Fig. 3 width x n study on CelebA)")
  p.add_argument("--config", help="config file of a custom study (e.g. configs/digits.py)")
  p.add_argument("--widths", type=_ints, help="model widths W, e.g. 8,16,32")
  p.add_argument("--n_train", type=_ints, help="the n-grid, e.g. 128,256,512")
  p.add_argument("--seeds", type=_ints, help="run seeds, e.g. 0,1")
  p.add_argument("--index", type=_ints, help="data blocks, e.g. 0,1")
  p.add_argument("--set", type=_override, action="append", default=[], metavar="KEY=VALUE",
                 help="a config override for every job (repeatable), e.g. "
                 "train.num_steps=100000")
  p.add_argument("--root", required=True, help="directory of the workdirs (ROOT/W<width>) "
                 "and of the combined report (ROOT/report); shared by all hosts")
  p.add_argument("--backend", choices=BACKENDS, default="local")
  p.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
  p.add_argument("--python", default="python", help="the Python the commands call")
  p.add_argument("--slurm_args", default="", help="extra sbatch options, e.g. "
                 "'--nodes=2 --gpus-per-node=8 --partition=gpu'")
  p.add_argument("--tpu_args", default="", help="options of launch/tpu_pod.sh, e.g. "
                 "'--name=jaxdiff --zone=us-central2-b --type=v4-32'")
  args = p.parse_args(argv)
  if (args.study is None) == (args.config is None):
    p.error("give either --study=NAME or --config=FILE with --widths and --n_train")
  return args


STUDY_KEYS = {"model.width": "--widths", "data.n_train": "--n_train",
              "data.seeds": "--seeds", "data.index": "--index"}


def study_from_args(args: argparse.Namespace) -> Study:
  for key, _ in args.set:
    if key in STUDY_KEYS:
      raise UsageError(f"--set={key}=...: the study sets {key}; use {STUDY_KEYS[key]}")
  base = PRESETS[args.study] if args.study else Study(args.config, (), ())
  study = dataclasses.replace(
      base, config=args.config or base.config, widths=args.widths or base.widths,
      n_train=args.n_train or base.n_train, seeds=args.seeds or base.seeds,
      index=args.index or base.index, overrides=base.overrides + tuple(args.set))
  if not study.widths or not study.n_train:
    raise UsageError("a custom study (--config) needs --widths and --n_train")
  return study


def _fail(message: str) -> int:
  print(f"jaxdiff: error: {message}", file=sys.stderr)
  return 2


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    study = study_from_args(args)
  except UsageError as e:
    return _fail(str(e))
  jobs = expand(study, args.root)
  from jaxdiff import cli  # its one-line rendering of config errors
  from jaxdiff.errors import JaxdiffError
  try:
    check_jobs(jobs)
  except (JaxdiffError, ValueError, KeyError, TypeError, AttributeError) as e:
    return _fail(f"{study.config}: {cli.one_line(e)}")
  cmds = commands(jobs, args.root, args.backend, python=args.python,
                  slurm_args=args.slurm_args, tpu_args=args.tpu_args)
  if args.dry_run:
    for cmd in cmds:
      print(shlex.join(cmd))
    return 0
  if args.backend == "slurm":
    ids = []
    for cmd in cmds[:-1]:
      out = subprocess.run([cmd[0], "--parsable", *cmd[1:]], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout
      ids.append(out.strip().split(";")[0])
      print(f"submitted {shlex.join(cmd)}: job {ids[-1]}")
    report = cmds[-1]
    subprocess.run([report[0], f"--dependency=afterok:{':'.join(ids)}", *report[1:]],
                   cwd=ROOT, check=True)
    return 0
  for cmd in cmds:  # local and tpu: one job after another, stop at the first failure
    print(f"+ {shlex.join(cmd)}", flush=True)
    code = subprocess.run(cmd, cwd=ROOT).returncode
    if code:
      return _fail(f"{shlex.join(cmd[:3])}... exited with {code}; fix it and rerun the same "
                   "command: finished jobs resume as done")
  return 0


if __name__ == "__main__":
  sys.exit(main())
