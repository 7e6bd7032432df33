"""launch/: the study expansion of sweep.py and the shell scripts for pods and clusters.

The dry-run commands are parsed back and each job's config is loaded from its flags the
way `python -m jaxdiff.main` loads it (ml_collections overrides) and validated
(jaxdiff.validation); the shell scripts are syntax-checked and dry-run.
"""

import importlib.util
import os
import shlex
import shutil
import stat
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from jaxdiff import validation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIG3_WIDTHS = [8, 16, 32, 48, 64]
FIG3_N = [128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768]


def load_sweep_module():
  spec = importlib.util.spec_from_file_location("launch_sweep",
                                                os.path.join(ROOT, "launch", "sweep.py"))
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up while it loads
  spec.loader.exec_module(module)
  return module


sweep = load_sweep_module()


def config_from_flags(args):
  """The config of `python -m jaxdiff.main ARGS`, parsed independently of sweep.py."""
  argv = ["main", *args]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True,
                                  sys_argv=argv)
  flags.DEFINE_string("workdir", None, "", flag_values=fv)
  cwd = os.getcwd()
  os.chdir(ROOT)
  try:
    fv(argv)
  finally:
    os.chdir(cwd)
  return fv.config, fv.workdir


def dry_run(*args):
  result = subprocess.run([sys.executable, "launch/sweep.py", *args, "--dry_run"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
  return result


@pytest.mark.slow
def test_fig3_dry_run_prints_one_job_per_width_and_the_report(tmp_path):
  root = str(tmp_path / "fig3")
  result = dry_run("--study=fig3", f"--root={root}")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert len(lines) == len(FIG3_WIDTHS) + 1
  workdirs = []
  for line, width in zip(lines, FIG3_WIDTHS):
    argv = shlex.split(line)
    assert argv[:3] == ["python", "-m", "jaxdiff.main"], line
    config, workdir = config_from_flags(argv[3:])
    validation.validate_sweep(config)
    assert config.model.width == width and config.model.name == "unet"
    assert list(config.data.n_train) == FIG3_N  # all n of one width in one program
    assert config.data.dataset == "celeb_a" and config.optim.name == "sgd"
    assert workdir == os.path.join(root, f"W{width}")
    workdirs.append(workdir)
  report = shlex.split(lines[-1])
  assert report[:3] == ["python", "-m", "jaxdiff.report"]
  assert [a.split("=", 1)[1] for a in report[3:] if a.startswith("--workdir=")] == workdirs
  assert f"--out={os.path.join(root, 'report')}" in report


def test_custom_study_with_seeds_blocks_and_overrides(tmp_path):
  result = dry_run("--config=configs/digits.py", "--widths=64,128", "--n_train=8,32",
                   "--seeds=0,1", "--index=0,1", "--set=train.num_steps=40000",
                   "--set=config.optim.lr=0.001,0.002", f"--root={tmp_path}")
  assert result.returncode == 0, result.stderr
  jobs = [shlex.split(l)[3:] for l in result.stdout.splitlines()[:-1]]
  assert len(jobs) == 2
  for args, width in zip(jobs, (64, 128)):
    config, _ = config_from_flags(args)
    validation.validate_sweep(config)
    assert (config.model.width, tuple(config.data.n_train), tuple(config.data.seeds),
            tuple(config.data.index), config.train.num_steps, tuple(config.optim.lr)) == (
                width, (8, 32), (0, 1), (0, 1), 40000, (0.001, 0.002))


@pytest.mark.parametrize("args,expected", [
    (["--study=fig3", "--widths=12"], "model.width = 12"),
    (["--study=fig3", "--set=train.num_stps=3"], "num_stps"),
    (["--study=fig3", "--set=data.n_train=3"], "use --n_train"),
    (["--config=configs/digits.py", "--widths=64"], "needs --widths and --n_train"),
])
def test_bad_studies_fail_before_anything_runs(tmp_path, args, expected):
  result = dry_run(*args, f"--root={tmp_path}")
  assert result.returncode == 2 and result.stdout == ""
  lines = [l for l in result.stderr.splitlines() if l.startswith("jaxdiff: error:")]
  assert len(lines) == 1 and expected in lines[0], result.stderr


def test_cluster_backends_wrap_the_same_jobs(tmp_path):
  jobs = sweep.expand(sweep.PRESETS["fig3"], str(tmp_path))
  slurm = sweep.commands(jobs, str(tmp_path), "slurm", slurm_args="--nodes=2 --gpus-per-node=8")
  tpu = sweep.commands(jobs, str(tmp_path), "tpu", tpu_args="--name=jd --zone=z --type=v4-32")
  for job, s, t in zip(jobs, slurm, tpu):
    assert s[:4] == ["sbatch", f"--job-name=jaxdiff-W{job.width}", "--nodes=2",
                     "--gpus-per-node=8"]
    assert s[4] == "launch/slurm_gpu.sh" and tuple(s[5:]) == job.args
    assert t[0] == "launch/tpu_pod.sh" and t[t.index("--") + 1:] == list(job.args)
  assert "jaxdiff.report" in slurm[-1][-1] and slurm[-1][0] == "sbatch"
  assert tpu[-1][:5] == ["launch/tpu_pod.sh", "--name=jd", "--zone=z", "--type=v4-32",
                         "--worker=0"] and "--module=jaxdiff.report" in tpu[-1]


def test_local_backend_runs_jobs_in_order_and_stops_at_a_failure(tmp_path):
  """A stand-in interpreter records each call; the job of width 32 fails."""
  log = tmp_path / "calls.txt"
  fake = tmp_path / "fake_python"
  fake.write_text("#!/bin/sh\n"
                  f"echo \"$*\" >> {shlex.quote(str(log))}\n"
                  "case \"$*\" in *model.width=32*) exit 3;; esac\n")
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  code = sweep.main(["--config=configs/digits.py", "--widths=16,32,64", "--n_train=8,16",
                     f"--root={tmp_path / 'wd'}", f"--python={fake}"])
  assert code == 2
  calls = log.read_text().splitlines()
  assert len(calls) == 2 and "model.width=16" in calls[0] and "model.width=32" in calls[1]
  log.write_text("")
  fake.write_text(f"#!/bin/sh\necho \"$*\" >> {shlex.quote(str(log))}\n")
  assert sweep.main(["--config=configs/digits.py", "--widths=16,64", "--n_train=8,16",
                     f"--root={tmp_path / 'wd'}", f"--python={fake}"]) == 0
  calls = log.read_text().splitlines()
  assert [c.split()[1] for c in calls] == ["jaxdiff.main", "jaxdiff.main", "jaxdiff.report"]


def test_shell_scripts_parse_and_dry_run():
  for script in ("tpu_pod.sh", "slurm_gpu.sh"):
    path = os.path.join(ROOT, "launch", script)
    assert os.access(path, os.X_OK), f"{script} is not executable"
    result = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

  jaxdiff_args = ["--config=configs/celeba.py", "--workdir=/mnt/jaxdiff/W32",
                  "--config.data.n_train=128,256"]
  result = subprocess.run(
      ["bash", "launch/tpu_pod.sh", "--name=jd", "--zone=us-central2-b", "--type=v5litepod-16",
       "--bucket=bk", "--dry_run", "--", *jaxdiff_args],
      cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  lines = [shlex.split(l) for l in result.stdout.strip().splitlines()]
  assert lines[0][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "create"]
  assert "--version=v2-alpha-tpuv5-lite" in lines[0]
  run = lines[-1]
  assert run[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"] and "--worker=all" in run
  remote = shlex.split(run[-1].removeprefix("--command="))
  at = remote.index("-m")
  assert "JAXDIFF_DISTRIBUTED=on" in remote and remote[at + 1] == "jaxdiff.main"
  assert remote[at + 2:] == jaxdiff_args  # the flags arrive unchanged on every worker
  assert any("gcsfuse" in " ".join(l) for l in lines)

  env = dict(os.environ, JAXDIFF_DRY_RUN="1", SLURM_SUBMIT_DIR=ROOT)
  result = subprocess.run(["bash", "launch/slurm_gpu.sh", *jaxdiff_args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  srun = shlex.split(result.stdout)
  assert srun[:2] == ["srun", "--ntasks-per-node=1"]
  assert srun[srun.index("-m") + 1] == "jaxdiff.main" and srun[-3:] == jaxdiff_args
  with open(os.path.join(ROOT, "launch", "slurm_gpu.sh")) as f:
    directives = [l.split()[1] for l in f if l.startswith("#SBATCH")]
  assert "--ntasks-per-node=1" in directives and "--requeue" in directives


@pytest.mark.skipif(shutil.which("sbatch") is None, reason="needs a SLURM client")
def test_slurm_accepts_the_script():
  result = subprocess.run(["sbatch", "--test-only", "launch/slurm_gpu.sh", "--config=x"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr


def _shell_words(command):
  """The words and operators a POSIX shell sees in `command` (`;`, `&&` split off)."""
  lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
  lexer.whitespace_split = True
  return list(lexer)


def test_operator_values_reach_the_workers_quoted():
  """A value with `; id` stays one word of the workers' shell commands, never a command."""
  evil = {"--python": "python3.11; id", "--bucket": "bk; id", "--tfds": "gs://b/t; id",
          "--module": "jaxdiff.main; id"}
  result = subprocess.run(
      ["bash", "launch/tpu_pod.sh", "--name=jd", "--zone=z", "--type=v4-32", "--dry_run",
       *[f"{k}={v}" for k, v in evil.items()], "--",
       "--config=configs/celeba.py", "--workdir=/mnt/jaxdiff/a; id"],
      cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  remote = [shlex.split(l)[-1].removeprefix("--command=")
            for l in result.stdout.strip().splitlines() if " ssh " in l]
  assert len(remote) == 4  # install, bucket, tfds, the command
  seen = set()
  for command in remote:
    words = _shell_words(command)
    # `id` never runs as a command after a `;` (the script's own `$(id -u)` is fine).
    assert not [i for i, w in enumerate(words) if w == "id" and words[i - 1] == ";"], command
    seen.update(w for w in words if w.endswith("; id"))
  assert {"python3.11; id", "bk; id", "gs://b/t; id", "jaxdiff.main; id",
          "--workdir=/mnt/jaxdiff/a; id"} <= seen

  env = dict(os.environ, JAXDIFF_DRY_RUN="1", SLURM_SUBMIT_DIR=ROOT,
             JAXDIFF_PYTHON="python; id", JAXDIFF_MODULE="jaxdiff.main; id")
  result = subprocess.run(["bash", "launch/slurm_gpu.sh", "--workdir=/x; id"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  words = _shell_words(result.stdout)
  assert not [i for i, w in enumerate(words) if w == "id" and words[i - 1] == ";"]
  assert {"python; id", "jaxdiff.main; id", "--workdir=/x; id"} <= set(words)
