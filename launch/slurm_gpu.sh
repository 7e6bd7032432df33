#!/usr/bin/env bash
# One jaxdiff command on one or more GPU nodes of a SLURM cluster: one process per node,
# each with all of its node's GPUs; jaxdiff joins the processes with jax.distributed
# (JAX's SLURM detection gives the coordinator, process count and ids).
#
#   sbatch launch/slurm_gpu.sh --config=configs/celeba.py --workdir=/shared/jaxdiff/W32 \
#       --config.model.width=32
#   sbatch --nodes=2 --gpus-per-node=4 --partition=gpu launch/slurm_gpu.sh --config=...
#
# Submit from the repository root (config paths are relative to it); the workdir must be
# on a filesystem every node sees. Ten minutes before the time limit the job asks jaxdiff
# to stop (SIGTERM: it checkpoints after the current dispatch and exits 75, "stopped,
# rerun to resume"), then requeues itself; the requeued job, like rerunning the same
# sbatch command, resumes from the workdir. A job preempted by the cluster gets the same
# SIGTERM and exit code. The script exits with jaxdiff's code (0 finished, 2 a user
# mistake, 3 some runs diverged, 75 stopped).
#
# Environment: JAXDIFF_PYTHON (default: python), JAXDIFF_MODULE (default: jaxdiff.main;
# jaxdiff.plan checks the layout first), JAXDIFF_INIT_TIMEOUT (seconds to wait for all
# nodes, default 300), JAXDIFF_DRY_RUN=1 (print the srun command, run nothing).
#
#SBATCH --job-name=jaxdiff
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=16
#SBATCH --time=2-00:00:00
#SBATCH --signal=B:USR1@600
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=jaxdiff-%x-%j.out

set -uo pipefail

if [[ $# -eq 0 ]]; then
  echo "usage: sbatch [sbatch options] launch/slurm_gpu.sh --config=... --workdir=... [--config.KEY=VALUE ...]" >&2
  exit 2
fi
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}" || exit 2

cmd=(srun --ntasks-per-node=1 --kill-on-bad-exit=1 --cpu-bind=none
     "${JAXDIFF_PYTHON:-python}" -m "${JAXDIFF_MODULE:-jaxdiff.main}" "$@")
if [[ "${JAXDIFF_DRY_RUN:-0}" == 1 ]]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi

# Near the time limit SLURM sends USR1 to this script (--signal=B:USR1@600): forward a
# SIGTERM to every task, let jaxdiff checkpoint and exit, then requeue.
requeue=0
on_time_limit() {
  requeue=1
  echo "jaxdiff: time limit near: stopping at the next dispatch to checkpoint" >&2
  scancel --signal=TERM "${SLURM_JOB_ID}"
}
trap on_time_limit USR1

echo "jaxdiff: job ${SLURM_JOB_ID:-?} on ${SLURM_JOB_NUM_NODES:-1} node(s): $(printf '%q ' "${cmd[@]}")" >&2
"${cmd[@]}" &
pid=$!
code=0
while true; do
  wait "${pid}"
  code=$?
  kill -0 "${pid}" 2>/dev/null || break  # wait was interrupted by the trap: keep waiting
done

if (( requeue )) && (( code == 75 )); then
  echo "jaxdiff: checkpointed; requeueing job ${SLURM_JOB_ID} (it resumes from the workdir)" >&2
  scontrol requeue "${SLURM_JOB_ID}"
fi
exit "${code}"
