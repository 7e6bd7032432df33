"""Config compatibility of a workdir (jaxdiff.workdir.config_differences)."""

from jaxdiff import workdir


def test_a_key_added_later_resumes_at_its_old_behaviour_only():
  stored = {"eval": {"k": 0.33}, "train": {"num_steps": 10}}
  # eval.extra_outputs did not exist when `stored` was written: () computes the same.
  assert workdir.config_differences(stored, {"eval": {"k": 0.33, "extra_outputs": ()},
                                             "train": {"num_steps": 20}}) == []
  diffs = workdir.config_differences(
      stored, {"eval": {"k": 0.33, "extra_outputs": ("sample_norm",)}, "train": {}})
  assert diffs == ["eval.extra_outputs: [] -> ['sample_norm']"]  # absent reads as ()
  # Any other key is still compared, absent or not.
  assert workdir.config_differences(stored, {"eval": {"k": 0.5}}) == ["eval.k: 0.33 -> 0.5"]
  assert workdir.config_differences(stored, {"eval": {"k": 0.33, "loss_t": 1.0}}) == [
      "eval.loss_t: '<absent>' -> 1.0"]
