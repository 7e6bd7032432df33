"""Fixed quality reference sets (issue 11 item 6): a held-out block at the end of the pool
order that does not depend on the n-grid and that no run trains on."""

import json
import os

import numpy as np
import pytest

from configs import test as test_config
from jaxdiff import data as data_lib
from jaxdiff import train
from jaxdiff.errors import ConfigError


def _config(n_train, index=(0,), **eval_overrides):
  c = test_config.get_config()
  c.data.n_train = n_train
  c.data.index = index
  c.report.auto = False
  for k, v in eval_overrides.items():
    c.eval[k] = v
  return c


def test_reference_block_is_the_end_of_the_pool_order():
  cfg = _config((8,)).data
  full = data_lib.load_dataset(cfg)
  held = data_lib.load_dataset(cfg, reference=300)
  head = data_lib.load_dataset(cfg, max_pool=50, reference=300)
  available = full.metadata["pool_available"]
  assert len(full.pool) == available and full.reference is None
  assert held.metadata["reference_start"] == available - 300
  np.testing.assert_array_equal(held.reference, full.pool[available - 300:])
  np.testing.assert_array_equal(held.pool, full.pool[:available - 300])
  np.testing.assert_array_equal(head.reference, held.reference)  # max_pool cuts the pool only
  np.testing.assert_array_equal(head.pool, full.pool[:50])
  np.testing.assert_array_equal(held.test, full.test)
  # A pool that cannot hold the block: no block (the trainer then uses the test split).
  assert data_lib.load_dataset(cfg, reference=available).reference is None
  # The same for synthetic data: the block is the end of the draws [0, pool_size).
  gcfg = {"dataset": "gmm", "dim": 4, "gmm_mean": 1.0, "pool_size": 1000, "num_test": 10,
          "order_seed": 0}
  g_full = data_lib.load_dataset(gcfg)
  g_held = data_lib.load_dataset(gcfg, max_pool=100, reference=200)
  np.testing.assert_array_equal(g_held.reference, g_full.pool[800:])
  np.testing.assert_array_equal(g_held.pool, g_full.pool[:100])
  assert g_held.metadata["reference_start"] == 800


def _sweep_reference(tmp_path, name, config):
  sweep = train.Sweep(config, str(tmp_path / name))
  with open(os.path.join(tmp_path, name, "reference_sets.json")) as f:
    record = json.load(f)
  return sweep, record


def test_reference_sets_do_not_depend_on_the_grid_and_no_run_trains_on_them(tmp_path):
  small, rec_small = _sweep_reference(tmp_path, "a", _config((8, 16)))
  large, rec_large = _sweep_reference(tmp_path, "b", _config((16, 64, 128), index=(0, 1)))
  assert rec_small == rec_large
  assert rec_small["source"] == "pool" and rec_small["description"]
  available = small.dataset.metadata["pool_available"]
  assert rec_small["sets"] == [[available - 200, available]]  # 1 set of 200 (configs/test.py)
  for (mu_a, s_a), (mu_b, s_b) in zip(small.quality.ref_stats, large.quality.ref_stats):
    np.testing.assert_array_equal(mu_a, mu_b)
    np.testing.assert_array_equal(s_a, s_b)
  # The reference images are the pool's last items, and every run's block ends before them.
  full = data_lib.load_dataset(large.config.data)
  for sweep in (small, large):
    np.testing.assert_array_equal(sweep.dataset.reference, full.pool[available - 200:])
    for r in sweep.table.runs:
      start, stop = r.offset, r.offset + r.n
      for lo, hi in rec_small["sets"]:
        assert stop <= lo or start >= hi, (r, lo, hi)


def test_grid_reaching_into_the_reference_block_is_refused(tmp_path):
  # digits pool 1697 - 200 reference = 1497 trainable items.
  with pytest.raises(ConfigError, match="reference"):
    train.Sweep(_config((8, 1024), index=(0,), fid_set_size=800), str(tmp_path / "c"))


def test_too_small_pool_takes_the_reference_sets_from_the_test_split(tmp_path):
  sweep, record = _sweep_reference(tmp_path, "d", _config((8,), fid_set_size=50,
                                                          fid_num_sets=40))
  assert record["source"] == "test" and record["sets"] == [[0, 50], [50, 100]]
  assert sweep.dataset.reference is None
