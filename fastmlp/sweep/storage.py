"""Where a sweep's trials live: the Optuna storage, a lock around it, and fault clean-up.

One study per sweep, in an Optuna RDB storage: by default an SQLite file in the sweep's
output directory, or any SQLAlchemy URL (`postgresql://...` to share one study between
machines). Three things make many workers on many machines safe:

* `storage_lock` serialises the two steps that race: creating the study (and the storage's
  tables), and claiming the next trial (count check + trial creation), so the sweep never
  runs more trials than asked. SQLite: an flock beside the file; PostgreSQL: an advisory
  lock, which the server drops when the holder's connection dies (a killed worker cannot
  leave it held).
* Trials carry their owner (host, pid) as user attributes, so the process that supervises a
  killed worker, or the next `fastmlp sweep` on that host, marks its RUNNING trial FAIL.
* Optuna's heartbeat (RDB storages) fails trials whose process vanished on another machine.
"""
from __future__ import annotations

import importlib.util
import os
import re
import socket
import warnings
from pathlib import Path
from typing import Optional

from ..errors import FastMLPError, first_line

HEARTBEAT_SECONDS = 10       # a running trial writes a heartbeat this often
GRACE_SECONDS = 60           # ... and is failed by another worker after this long without one
SQLITE_TIMEOUT_SECONDS = 60  # wait this long for SQLite's write lock instead of failing
# PostgreSQL advisory lock key for fastmlp sweeps ("fastmlp" in ASCII), one per database.
ADVISORY_LOCK_KEY = int.from_bytes(b"fastmlp", "big")

STUDY_FILE = "study.db"


class StorageError(FastMLPError):
    """The sweep storage cannot be opened or used."""


# --------------------------------------------------------------------------- URLs

def storage_url(storage: Optional[str], out_dir: Path) -> str:
    """The SQLAlchemy URL of the sweep's storage: --storage, or out_dir/study.db."""
    if not storage:
        return f"sqlite:///{Path(out_dir).resolve() / STUDY_FILE}"
    if "://" not in storage:
        raise StorageError(
            f"--storage: {storage!r} is not a database URL; use e.g. "
            "sqlite:///path/study.db or postgresql://user:password@host:5432/dbname")
    return with_postgres_driver(storage)


def with_postgres_driver(url: str) -> str:
    """Name a PostgreSQL driver that is installed.

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3; fastmlp's `postgres` extra
    installs psycopg2, so use it when psycopg 3 is absent.
    """
    match = re.match(r"^(postgresql|postgres)://", url)
    if match and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[match.end():]
    return url


def redacted(url: str) -> str:
    """The URL with its password hidden, for messages."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def sqlite_file(url: str) -> Optional[Path]:
    """The file of an sqlite:/// URL (None for other databases)."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url[len("sqlite:///"):])
    return None


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgresql", "postgres:"))


# --------------------------------------------------------------------------- the lock

class StorageLock:
    """An inter-process lock tied to a storage; acquire() / release() may be split.

    The worker releases it from inside the objective, once its trial exists, so the count
    check and the trial's creation happen under the lock but training does not.
    """

    def __init__(self, url: str):
        self._url = url
        self._release = None  # undoes the current acquisition

    def acquire(self) -> "StorageLock":
        sqlite_path = sqlite_file(self._url)
        if sqlite_path is not None:
            self._release = _flock(sqlite_path.with_name(sqlite_path.name + ".lock"))
        elif _is_postgres(self._url):
            self._release = _advisory_lock(self._url)
        else:  # other databases: no lock; the worker also checks its trial number
            self._release = lambda: None
        return self

    @property
    def exclusive(self) -> bool:
        """True when acquire() really excludes other processes (SQLite, PostgreSQL)."""
        return sqlite_file(self._url) is not None or _is_postgres(self._url)

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> "StorageLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


def _flock(lock_path: Path):
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a")
    fcntl.flock(handle, fcntl.LOCK_EX)

    def release():
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
    return release


_ENGINES: dict = {}


def _advisory_lock(url: str):
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = _ENGINES.get(url)
    if engine is None:
        engine = _ENGINES[url] = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        connection = engine.connect()
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"),
                           {"key": ADVISORY_LOCK_KEY})
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise StorageError(f"cannot lock storage {redacted(url)}: {first_line(error)}") from None

    def release():
        try:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"),
                               {"key": ADVISORY_LOCK_KEY})
        finally:
            connection.close()  # ending the session would drop the lock anyway
    return release


# --------------------------------------------------------------------------- studies

def open_storage(url: str):
    """An Optuna RDBStorage with heartbeats; creates the tables if they are missing.

    Call it under `storage_lock` the first time: concurrent table creation races.
    """
    import optuna
    import sqlalchemy

    sqlite_path = sqlite_file(url)
    engine_kwargs = {}
    if sqlite_path is not None:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_SECONDS}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as error:
            raise StorageError(
                f"cannot open storage {redacted(url)}: {first_line(error)}") from None


def create_or_load_study(url: str, spec, storage=None, seeds: int = 1):
    """Create the sweep's study, or load it; refuse one made from a different search space
    or run with another --seeds (its objective would mean something else).

    Done once, by the process that starts the workers, under the storage lock.
    """
    import optuna

    with StorageLock(url):
        storage = storage or open_storage(url)
        study = optuna.create_study(storage=storage, study_name=spec.name,
                                    direction=spec.direction, load_if_exists=True)
        fingerprint = spec_fingerprint(spec)
        stored = study.user_attrs.get("spec_fingerprint")
        if stored is None:
            study.set_user_attr("spec_fingerprint", fingerprint)
            study.set_user_attr("metric", spec.metric)
            study.set_user_attr("method", spec.method)
            study.set_user_attr("seeds", seeds)
        elif stored != fingerprint:
            raise StorageError(
                f"study {spec.name!r} in {redacted(url)} was made from a different sweep "
                "file (search space, method or metric changed); give a new --name")
        stored_seeds = study.user_attrs.get("seeds", 1)
        if stored_seeds != seeds:
            raise StorageError(
                f"--seeds: sweep {spec.name!r} was run with --seeds {stored_seeds}; give "
                f"--seeds {stored_seeds} to continue it, or a new --name")
        if study.direction.name.lower() != spec.direction:
            raise StorageError(f"study {spec.name!r} in {redacted(url)} has direction "
                               f"{study.direction.name.lower()}, the sweep file {spec.direction}")
    return study


def load_study(url: str, name: str, sampler=None, pruner=None):
    """Load an existing study; StorageError if there is none by that name."""
    import optuna

    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler,
                                 pruner=pruner)
    except KeyError:
        raise StorageError(f"no sweep {name!r} in {redacted(url)}: run it first") from None


def spec_fingerprint(spec) -> str:
    """What must not change when a sweep is continued: method, metric, search space."""
    import hashlib
    import json

    described = {
        "method": spec.method, "metric": spec.metric, "goal": spec.goal,
        "params": [p.to_wandb() | {"name": p.name} for p in spec.params],
    }
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- counting

# Trials that use up the sweep's --count: everything created except queued (WAITING) ones
# and repeats (answered from a stored result without training, claims.py).
def counted_trials(study_or_trials) -> list:
    trials = (study_or_trials if isinstance(study_or_trials, list)
              else study_or_trials.get_trials(deepcopy=False))
    return [t for t in trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")
            and "repeat_of" not in t.user_attrs]


# --------------------------------------------------------------------------- faults

def owner_attrs(worker: int) -> dict:
    """User attributes that name the process running a trial."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "worker": worker}


def fail_running_trials(study, should_fail, reason: str) -> list:
    """Mark FAIL every RUNNING trial for which should_fail(trial) holds; return their numbers."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage  # the storage object the study was opened with
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not should_fail(trial):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, trial.number)
        try:
            storage.set_trial_user_attr(trial_id, "fail_reason", reason)
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
            failed.append(trial.number)
        except UpdateFinishedTrialError:
            pass  # it finished (or someone else failed it) meanwhile
    return failed


def fail_trials_of_process(study, pid: int, reason: str) -> list:
    """Fail the RUNNING trials of a process of this host (one that died)."""
    host = socket.gethostname()
    return fail_running_trials(
        study, lambda t: t.user_attrs.get("host") == host and t.user_attrs.get("pid") == pid,
        reason)


def fail_orphaned_trials(study) -> list:
    """Fail RUNNING trials of this host whose process is gone (a whole sweep was killed)."""
    host = socket.gethostname()
    return fail_running_trials(
        study, lambda t: t.user_attrs.get("host") == host
        and isinstance(t.user_attrs.get("pid"), int) and not _process_alive(t.user_attrs["pid"]),
        "its process was gone when the sweep was started again")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed process whose parent died too may linger as a zombie nobody reaps.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")
