"""The README's code examples run as written."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_memorization_example_runs(tmp_path):
  text = open(os.path.join(ROOT, "README.md")).read()
  block = re.search(r"<!-- readme-example: tests/readme_test.py runs this block -->\n"
                    r"```python\n(.*?)```", text, re.S).group(1)
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  fractions = [float(m) for m in re.findall(r"f_mem (\d\.\d+) \[", proc.stdout)]
  # The stand-in sampler copies a fraction step / 40,000 of its samples: 0 -> ~0.75.
  assert len(fractions) == 4 and fractions[0] == 0.0 and fractions[-1] > 0.5
  assert os.path.getsize(tmp_path / "copies.png") > 1000


def test_cpu_install_does_not_pull_gpu_wheels():
  """The test extra needs no torch, and the README installs PyTorch's CPU wheels before the
  torch extra (plain `pip install torch` pulls the CUDA build: 6.5 GB on a CPU machine)."""
  import tomllib
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    extras = tomllib.load(f)["project"]["optional-dependencies"]
  assert not any(d.split(">")[0].split("=")[0].strip() in ("torch", "torchvision")
                 for d in extras["test"])
  text = open(os.path.join(ROOT, "README.md")).read()
  cpu = text.index("pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu")
  assert cpu < text.index("pip install -e '.[test,torch]'")
