#!/usr/bin/env bash
# One jaxdiff command on every worker of a Cloud TPU VM slice (v4, v5e, v5p, v6e).
#
#   launch/tpu_pod.sh --name=jaxdiff --zone=us-central2-b --type=v4-32 --bucket=MY_BUCKET \
#       --tfds=gs://MY_BUCKET/tensorflow_datasets -- \
#       --config=configs/celeba.py --workdir=/mnt/jaxdiff/celeba/W32 --config.model.width=32
#
# Steps (each is skipped when already done, so rerunning the same command resumes):
#   1. create the slice, or reuse it (a preempted or stopped one is deleted and recreated);
#   2. copy this checkout (tracked and untracked, not ignored, files) to ~/jaxdiff on every
#      worker and install it with jax[tpu] and tensorflow-datasets in ~/jaxdiff-venv;
#   3. --bucket: mount the bucket at /mnt/jaxdiff on every worker (gcsfuse): the workdir
#      must be one directory that every worker sees and that outlives the VMs;
#      --tfds: copy prepared TFDS data (e.g. celeb_a, built once with `tfds build`) to
#      ~/tensorflow_datasets on every worker;
#   4. run `python -m jaxdiff.main ARGS` (of the venv) on all workers at once (--worker=all), with
#      JAXDIFF_DISTRIBUTED=on: jaxdiff joins the workers with jax.distributed (JAX finds
#      them through the TPU metadata server) and every worker runs the same program.
#
# Options (before --; everything after -- goes to the Python module):
#   --name=NAME --zone=ZONE --type=ACCELERATOR_TYPE (v4-32, v5litepod-16, v5p-32, v6e-16)
#   --project=PROJECT     default: gcloud's configured project
#   --version=RUNTIME     default by family: v4 tpu-ubuntu2204-base, v5e v2-alpha-tpuv5-lite,
#                         v5p v2-alpha-tpuv5, v6e v2-alpha-tpuv6e
#   --python=PYTHON       the interpreter of ~/jaxdiff-venv (default python3.11, installed
#                         with apt when missing; jaxdiff needs Python >= 3.11)
#   --spot                create a spot (preemptible) slice
#   --bucket=BUCKET       mount gs://BUCKET at /mnt/jaxdiff (workdirs under it)
#   --tfds=GS_PATH        prepared TFDS data to copy to ~/tensorflow_datasets
#   --worker=all|N        where to run (default all; the report runs on worker 0)
#   --module=MODULE       jaxdiff.main (default), jaxdiff.plan or jaxdiff.report
#   --detach              start the command in the background on the workers (logs in
#                         ~/jaxdiff.log there) and return: for runs longer than a terminal
#   --skip_setup          reuse the installed code as it is (steps 1-3 skipped)
#   --delete              delete the slice after the command finishes
#   --dry_run             print the commands, run nothing

set -euo pipefail

name="" zone="" type="" project="" version="" python="python3.11" spot=0 bucket="" tfds="" worker="all"
module="jaxdiff.main" detach=0 skip_setup=0 delete=0 dry_run=0
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --type=*) type="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --python=*) python="${1#*=}" ;;
    --spot) spot=1 ;;
    --bucket=*) bucket="${1#*=}" ;;
    --tfds=*) tfds="${1#*=}" ;;
    --worker=*) worker="${1#*=}" ;;
    --module=*) module="${1#*=}" ;;
    --detach) detach=1 ;;
    --skip_setup) skip_setup=1 ;;
    --delete) delete=1 ;;
    --dry_run) dry_run=1 ;;
    --) shift; args=("$@"); break ;;
    *) echo "tpu_pod.sh: unknown option $1 (options go before --, jaxdiff flags after it)" >&2
       exit 2 ;;
  esac
  shift
done
for required in name zone type; do
  if [[ -z "${!required}" ]]; then
    echo "tpu_pod.sh: --${required}=... is required" >&2
    exit 2
  fi
done
if [[ ${#args[@]} -eq 0 ]]; then
  echo "tpu_pod.sh: give the jaxdiff flags after --, e.g. -- --config=configs/celeba.py --workdir=/mnt/jaxdiff/W32" >&2
  exit 2
fi
if (( detach && delete )); then
  echo "tpu_pod.sh: --detach returns while the command runs: it cannot be combined with --delete" >&2
  exit 2
fi
if [[ -z "${version}" ]]; then
  case "${type}" in
    v4-*) version="tpu-ubuntu2204-base" ;;
    v5litepod-*|v5e-*) version="v2-alpha-tpuv5-lite" ;;
    v5p-*) version="v2-alpha-tpuv5" ;;
    v6e-*) version="v2-alpha-tpuv6e" ;;
    *) echo "tpu_pod.sh: no default runtime for --type=${type}: give --version=..." >&2; exit 2 ;;
  esac
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
# Every operator value that goes into a shell command on the workers is quoted for that
# shell (a value with spaces or `;` stays one word, never a command).
q() { printf '%q' "$1"; }
qpython="$(q "${python}")" qvenv="$(q "${python}-venv")" qbucket="$(q "${bucket}")"
qtfds="$(q "${tfds}")" qmodule="$(q "${module}")"
where=(--zone="${zone}")
[[ -n "${project}" ]] && where+=(--project="${project}")

run() {  # prints the command; runs it unless --dry_run
  printf '%q ' "$@"
  echo
  if (( ! dry_run )); then "$@"; fi
}

on_workers() {  # on_workers WORKER SHELL_COMMAND
  run gcloud compute tpus tpu-vm ssh "${name}" "${where[@]}" --worker="$1" --command="$2"
}

if (( ! skip_setup )); then
  # 1. The slice: reuse a READY one; recreate one that was preempted or stopped.
  state=""
  if (( ! dry_run )); then
    state="$(gcloud compute tpus tpu-vm describe "${name}" "${where[@]}" \
             --format='value(state)' 2>/dev/null || true)"
  fi
  if [[ "${state}" == "PREEMPTED" || "${state}" == "TERMINATED" || "${state}" == "STOPPED" ]]; then
    run gcloud compute tpus tpu-vm delete "${name}" "${where[@]}" --quiet
    state=""
  fi
  if [[ -z "${state}" ]]; then
    create=(gcloud compute tpus tpu-vm create "${name}" "${where[@]}"
            --accelerator-type="${type}" --version="${version}")
    (( spot )) && create+=(--spot)
    run "${create[@]}"
  fi

  # 2. This checkout on every worker, installed.
  tarball="$(mktemp -t jaxdiff-XXXXXX.tgz)"
  trap 'rm -f "${tarball}"' EXIT
  if (( ! dry_run )); then
    (cd "${repo}" && git ls-files -co --exclude-standard -z | tar czf "${tarball}" --null -T -)
  fi
  run gcloud compute tpus tpu-vm scp "${tarball}" "${name}:jaxdiff.tgz" "${where[@]}" --worker=all
  # jaxdiff needs Python >= 3.11; the TPU images are Ubuntu 22.04 (Python 3.10): a 3.11
  # virtual environment in ~/jaxdiff-venv.
  on_workers all "mkdir -p ~/jaxdiff && tar xzf ~/jaxdiff.tgz -C ~/jaxdiff && \
{ command -v ${qpython} >/dev/null || { sudo apt-get update -qq && \
sudo apt-get install -y -qq ${qpython} ${qvenv}; }; } && \
{ [ -x ~/jaxdiff-venv/bin/python ] || ${qpython} -m venv ~/jaxdiff-venv; } && \
~/jaxdiff-venv/bin/pip install -q -U pip 'jax[tpu]' && \
~/jaxdiff-venv/bin/pip install -q -e ~/jaxdiff tensorflow-datasets importlib_resources"

  # 3. Shared workdir (a bucket through gcsfuse; directory renames are what orbax commits
  # checkpoints with) and the prepared data.
  if [[ -n "${bucket}" ]]; then
    on_workers all "command -v gcsfuse >/dev/null || { \
echo 'deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-'\$(lsb_release -cs)' main' | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null && \
curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null && \
sudo apt-get update -qq && sudo apt-get install -y -qq gcsfuse; } && \
sudo mkdir -p /mnt/jaxdiff && sudo chown \$(id -u):\$(id -g) /mnt/jaxdiff && \
{ mountpoint -q /mnt/jaxdiff || gcsfuse --implicit-dirs --rename-dir-limit=1000000 ${qbucket} /mnt/jaxdiff; }"
  fi
  if [[ -n "${tfds}" ]]; then
    on_workers all "mkdir -p ~/tensorflow_datasets && gcloud storage rsync -r ${qtfds} ~/tensorflow_datasets"
  fi
fi

# 4. The same command on the workers.
distributed="on"
[[ "${worker}" != "all" ]] && distributed="off"
quoted="$(printf '%q ' "${args[@]}")"
command="cd ~/jaxdiff && JAXDIFF_DISTRIBUTED=${distributed} ~/jaxdiff-venv/bin/python -m ${qmodule} ${quoted% }"
if (( detach )); then
  command="nohup bash -c $(printf '%q' "${command}") >> ~/jaxdiff.log 2>&1 < /dev/null &"
fi
on_workers "${worker}" "${command}"

if (( delete )); then
  run gcloud compute tpus tpu-vm delete "${name}" "${where[@]}" --quiet
fi
