"""benchmarks/device_check.sh --smoke: the GPU check's code paths at tiny sizes on a CPU,
so that the one-command device check cannot rot between accelerator loans."""

import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_device_check_smoke(tmp_path):
  env = dict(os.environ)
  env.update(JAX_PLATFORMS="cpu")
  res = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "device_check.sh"),
                        str(tmp_path), "--smoke"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=1200)
  assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
  with open(tmp_path / "device_check.json") as f:
    result = json.load(f)
  assert result["smoke"] and result["device"]["platform"] == "cpu"
  assert "skipped" in result["pytest"]  # the gpu tests, skipped on a CPU
  rows = result["throughput"]
  assert {(r["dtype"], r["models_axis"]) for r in rows} == {
      ("float32", a) for a in ("vmap", "unroll")}  # bfloat16: GPU only (slow XLA:CPU compile)
  for r in rows:
    assert "error" not in r and "skipped" not in r, r
    assert r["model_steps_per_s"] > 0 and r["compile_s"] > 0 and r["flops_per_model_step"] > 0
  memory = result["memory"]
  assert [(r["remat"], r["dtype"]) for r in memory] == [("none", "float32"),
                                                         ("convs", "float32")]
  for r in memory:
    assert "error" not in r, r
    assert r["estimate"] > r["resident"] > 0 and r["step_s"] > 0
  m = result["metrics"]
  assert m["fmem_s"] > 0 and m["inception_features_per_s"] > 0
  text = (tmp_path / "device_check.md").read_text()
  for heading in ("Training throughput", "plan's estimate against the measured peak",
                  "f_mem of 64 samples", "Inception pool3 features", "conv_models_axis"):
    assert heading in text, heading
