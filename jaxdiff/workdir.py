"""One writer per workdir: the lock, the claim and the record of the config.

  claim = workdir.claim(path, config_dict, is_main=...)   # lock + checks, nothing written
  ...                                                     # checks that need the data
  claim.record_config()                                   # config.json, after every check
  ...
  claim.release()

The lock is the file `.jaxdiff.lock` in the workdir, holding JSON with the holder's host,
pid, start time and a heartbeat time. It is held in two ways at once:

- an OS lock (`fcntl.flock`) on the file, where the filesystem has one: a second process
  is refused at once, and the kernel drops the lock of a process killed with -9;
- a heartbeat: a thread rewrites the heartbeat time every HEARTBEAT_SECS, for shared
  filesystems whose OS lock is missing or local to one host (some NFS setups, gcsfuse).

A lock file whose OS lock is free is taken over (with a warning naming the old holder)
when its holder is dead (same host, pid gone) or its heartbeat is older than STALE_SECS;
otherwise the process is refused with one line naming the holder. The processes of one
multi-host launch share the lock of process 0: only process 0 takes it, and the others
learn its outcome (so they all fail together, or all go on).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import threading
import time
import uuid

from jaxdiff import distributed
from jaxdiff import fileio
from jaxdiff.errors import WorkdirError

LOCK_NAME = ".jaxdiff.lock"
HEARTBEAT_SECS = 10.0
# A lock whose heartbeat is older than this is stale (its holder stopped without
# unlocking, on a filesystem without a working OS lock). Twelve missed heartbeats.
STALE_SECS = 120.0
# Where there is no OS lock two processes may write the lock file at the same moment:
# each re-reads it after this long and the one whose token is not there backs off.
_SETTLE_SECS = 1.0
_RECORD_BYTES = 1024  # the lock record is written in place, padded to a fixed size

_held: dict[str, "_Lock"] = {}  # realpath -> lock held by this process

# Keys that may change between runs on the same workdir (they change how or how long, not
# what, is computed).
RESUMABLE_KEYS = (
    "train.num_steps", "train.steps_per_dispatch", "train.checkpoint_every_secs",
    "train.max_checkpoints", "train.models_axis", "train.models_group", "train.data_parallel",
    "eval.times", "eval.grid", "eval.num_times", "eval.first_time", "eval.sample_batch",
    "eval.grid_runs", "eval.grid_samples", "eval.inception_weights", "eval.cache_dir",
    "data.tfds_data_dir", "model.conv_batching",
)
RESUMABLE_PREFIXES = ("report.",)
# Keys added after workdirs were written, with the value that computes what those workdirs
# computed: a config.json without the key resumes when the key has this value.
ADDED_KEYS = {"eval.extra_outputs": ()}


def _normalise(v):
  # JSON turns tuples into lists; compare in JSON form.
  return json.loads(fileio.dumps(v))


def config_differences(stored: dict, current: dict) -> list[str]:
  """Keys whose values differ and that a resume may not change, as 'key: old -> new'."""
  a, b = fileio.flatten_dict(stored), fileio.flatten_dict(current)
  diffs = []
  for key in sorted(set(a) | set(b)):
    if key in RESUMABLE_KEYS or key.startswith(RESUMABLE_PREFIXES):
      continue
    old, new = _normalise(a.get(key, "<absent>")), _normalise(b.get(key, "<absent>"))
    if key in ADDED_KEYS and "<absent>" in (old, new):
      as_before = _normalise(ADDED_KEYS[key])
      old, new = (as_before if v == "<absent>" else v for v in (old, new))
    if old != new:
      diffs.append(f"{key}: {old!r} -> {new!r}")
  return diffs


def _describe(info: dict) -> str:
  started = info.get("start_time")
  when = (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
          if isinstance(started, (int, float)) else "an unknown time")
  return f"pid {info.get('pid', '?')} on host {info.get('host', '?')} (started {when})"


def _pid_alive(pid) -> bool:
  if not isinstance(pid, int) or pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, owned by someone else
    return True
  return True


class _Lock:
  """The lock file of one workdir, held by this process."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_NAME)
    self.fd: int | None = None
    self.os_locked = False
    self.info = {}
    self.users = 0
    self.took_over: str | None = None  # the holder of a stale lock taken over
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  # -- the record

  def _read(self) -> dict:
    try:
      with open(self.path, "rb") as f:
        data = f.read().strip(b" \n\x00")
      return json.loads(data) if data else {}
    except (OSError, ValueError):
      return {}

  def _write(self) -> None:
    data = (json.dumps(self.info, sort_keys=True) + "\n").encode()
    data = data.ljust(_RECORD_BYTES)  # in place, one write: readers see whole records
    fileio.write_all(self.fd, data, offset=0)
    os.fsync(self.fd)

  # -- taking and dropping

  def acquire(self) -> None:
    try:
      self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise WorkdirError(f"--workdir={self.workdir} is not writable ({e.strerror}: "
                         f"{self.path}); choose a directory you can write to") from None
    try:
      self._acquire()
    except BaseException:
      os.close(self.fd)
      self.fd = None
      raise

  def _acquire(self) -> None:
    try:
      import fcntl
      fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      self.os_locked = True
    except ImportError:  # no fcntl (Windows): heartbeat only
      pass
    except OSError as e:
      if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        holder = self._read()
        raise WorkdirError(
            f"--workdir={self.workdir} is in use by {_describe(holder)} (lock {self.path}); "
            "one process writes a workdir: wait for it to finish or stop it, or use "
            "another --workdir") from None
      # ENOLCK, EOPNOTSUPP...: the filesystem has no OS lock; rely on the heartbeat.
      logging.warning("no OS lock on %s (%s): using the heartbeat only", self.path, e)
    old = self._read()
    host = socket.gethostname()
    if old.get("token"):
      age = time.time() - float(old.get("heartbeat", 0) or 0)
      same_host = old.get("host") == host
      dead = same_host and not _pid_alive(old.get("pid"))
      if not dead and age < STALE_SECS and not (self.os_locked and same_host):
        # The OS lock is free but the holder is alive and beating: a filesystem whose
        # lock does not reach across hosts.
        raise WorkdirError(
            f"--workdir={self.workdir} is in use by {_describe(old)}, whose heartbeat is "
            f"{age:.0f} s old (lock {self.path}; stale after {STALE_SECS:.0f} s); wait for "
            "it to finish or stop it, or use another --workdir")
      why = ("its process is gone" if dead or (self.os_locked and same_host) else
             f"its heartbeat is {age:.0f} s old")
      logging.warning("taking over the lock of %s on %s: %s (killed, or its host went "
                      "down)", _describe(old), self.workdir, why)
      self.took_over = _describe(old)
    self.info = dict(host=host, pid=os.getpid(), start_time=time.time(),
                     heartbeat=time.time(), token=uuid.uuid4().hex)
    self._write()
    if not self.os_locked:
      time.sleep(_SETTLE_SECS)
      now = self._read()
      if now.get("token") != self.info["token"]:
        raise WorkdirError(f"--workdir={self.workdir} was claimed at the same moment by "
                           f"{_describe(now)} (lock {self.path}); use another --workdir")
    self._thread = threading.Thread(target=self._beat, name="jaxdiff-lock", daemon=True)
    self._thread.start()

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_SECS):
      try:
        self.info["heartbeat"] = time.time()
        self._write()
      except OSError as e:  # a full or vanished disk: the run itself will say so
        logging.warning("could not refresh the workdir lock %s: %s", self.path, e)

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    if self.fd is None:
      return
    try:
      # Mark the record released (a later process takes it without a warning).
      self.info = {}
      self._write()
    except OSError:
      pass
    try:
      if self.os_locked:
        import fcntl
        fcntl.flock(self.fd, fcntl.LOCK_UN)
    finally:
      os.close(self.fd)
      self.fd = None


def _take(workdir: str) -> _Lock:
  key = os.path.realpath(workdir)
  lock = _held.get(key)
  if lock is None:
    lock = _Lock(workdir)
    lock.acquire()
    _held[key] = lock
  lock.users += 1
  return lock


def _drop(workdir: str) -> None:
  key = os.path.realpath(workdir)
  lock = _held.get(key)
  if lock is None:
    return
  lock.users -= 1
  if lock.users <= 0:
    del _held[key]
    lock.release()


def _prepare_directory(workdir: str) -> None:
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir={workdir} is a file, not a directory; give a new or "
                       "existing directory")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f"--workdir={workdir} cannot be created ({e.strerror}); give a "
                       "directory you can write to") from None
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise WorkdirError(f"--workdir={workdir} is not writable (permission denied); give a "
                       "directory you can write to")


def check_compatible(workdir: str, config_dict: dict) -> bool:
  """True when `workdir` holds this sweep (a resume); raises when it is foreign.

  Raises:
    WorkdirError: the directory is foreign or its config differs in non-resumable keys.
  """
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    try:
      with open(path) as f:
        stored = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise WorkdirError(f"{path} is not a readable jaxdiff config ({e}); "
                         "use a new --workdir") from None
    diffs = config_differences(stored, config_dict)
    if diffs:
      raise WorkdirError(
          f"--workdir={workdir} holds a run of a different config; differing keys: "
          + "; ".join(diffs) + ". Use a new --workdir, or the config stored in "
          f"{path}.")
    return True
  if os.path.isdir(workdir) and any(not n.startswith(".") for n in os.listdir(workdir)):
    raise WorkdirError(f"--workdir={workdir} is not empty and has no config.json, so it "
                       "is not a jaxdiff workdir; choose a new or empty directory")
  return False


class Claim:
  """This process's (or launch's) hold on a workdir; see the module docstring."""

  def __init__(self, workdir: str, config_dict: dict, is_main: bool, resumed: bool,
               locked: bool):
    self.workdir, self.config_dict, self.is_main = workdir, config_dict, is_main
    self.resumed, self._locked, self._recorded = resumed, locked, resumed

  def record_config(self) -> None:
    """Writes config.json (process 0) once every check has passed; all processes wait."""
    if not self._recorded and self.is_main:
      fileio.atomic_write_json(os.path.join(self.workdir, "config.json"), self.config_dict)
    self._recorded = True
    distributed.check_same_on_all_processes("workdir claimed", "the workdir")

  def release(self) -> None:
    if self._locked:
      self._locked = False
      _drop(self.workdir)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()


def claim(workdir: str, config_dict: dict, is_main: bool = True) -> Claim:
  """Takes the workdir for this launch: the lock (process 0), then the config check.

  Nothing is written but the directory itself and its lock file; `Claim.record_config`
  writes config.json once the caller's remaining checks have passed.

  With several processes every process calls it: they check that they run the same
  config, process 0 takes the lock, and all of them fail together when it could not.

  Raises:
    WorkdirError: the path is a file or not writable, another process holds the lock,
      or the workdir is foreign or holds a different config.
    JaxdiffError: the processes of a multi-process launch run different configs.
  """
  distributed.check_same_on_all_processes(fileio.dumps(config_dict), "the config")
  error = None
  locked = False
  if is_main:
    try:
      _prepare_directory(workdir)
      _take(workdir)
      locked = True
      resumed = check_compatible(workdir, config_dict)
    except WorkdirError as e:
      error = e
      if locked:
        _drop(workdir)
  (failed,) = distributed.any_process(error is not None)
  if error is not None:
    raise error
  if failed:
    raise WorkdirError(f"process 0 could not claim --workdir={workdir} (its own message "
                       "says why)")
  if not is_main:
    # Every process looks at the workdir after process 0 has checked it, before config.json
    # is written (a config.json appearing between two looks would look foreign).
    resumed = check_compatible(workdir, config_dict)
  return Claim(workdir, config_dict, is_main, resumed, locked)
