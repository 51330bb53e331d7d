"""No configuration is trained twice in a study: configuration keys, claims, untried points.

A trial's configuration is everything that changes its numbers: the sweepable train settings
(config.SWEEPABLE: the swept parameters, the file's constants, the base settings such as the
dataset and the seed) and the number of seeds (--seeds). `config_key` hashes them. The worker
records the key on its trial as the user attribute `config_key` while it holds the storage
lock (storage.StorageLock), right after the sampler proposed the point, so two workers on two
machines proposing the same point at once are serialised: the second sees the first's claim.

A trial *holds* its key (the configuration counts as tried) when it is COMPLETE, PRUNED or
RUNNING, or FAILed because the training diverged (the same seed diverges again) or because
train refused the configuration (a rule across settings, e.g. --residual without two equal
widths in a row). A trial that failed for another reason (interrupted, killed) does not: the
configuration may be retried.

A proposal whose key is held is a *repeat*: it is answered from the stored result without
training and marked with the user attribute `repeat_of` (the trial that trained it). Repeats
use up no --count. After REPEATS_BEFORE_STEERING repeats in a row, the worker steers the
sampler: it enqueues a random point that no trial holds (`untried_point`). A finite space
(every searched parameter discrete) ends the sweep once every point is held.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from typing import Optional

from ..config import SWEEPABLE

REPEAT_OF = "repeat_of"          # user attr: the number of the trial that trained this point
CONFIG_KEY = "config_key"        # user attr: config_key() of the trial's configuration
DIVERGED = "diverged"            # user attr: True when the training diverged (FAIL)
REFUSED = "refused"              # user attr: True when train refused the configuration (FAIL)
REPEATS_BEFORE_STEERING = 2      # sampler repeats in a row before an untried point is enqueued
RANDOM_DRAWS = 200               # draws tried before the untried points are enumerated


def config_key(values: dict, seeds: int = 1) -> str:
    """The key of a configuration: its sweepable settings and the number of seeds."""
    described = {name: values.get(name) for name in SWEEPABLE}
    described["seeds"] = int(seeds)
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def is_repeat(trial) -> bool:
    return REPEAT_OF in trial.user_attrs


def holds_key(trial) -> bool:
    """True when this trial makes its configuration 'tried' (see the module's text)."""
    if is_repeat(trial) or CONFIG_KEY not in trial.user_attrs:
        return False
    state = trial.state.name
    return state in ("COMPLETE", "PRUNED", "RUNNING") or (
        state == "FAIL" and bool(trial.user_attrs.get(DIVERGED) or trial.user_attrs.get(REFUSED)))


def held_keys(trials) -> dict:
    """config_key -> the first trial holding it."""
    held: dict = {}
    for trial in sorted(trials, key=lambda t: t.number):
        if holds_key(trial):
            held.setdefault(trial.user_attrs[CONFIG_KEY], trial)
    return held


def repeats(trials) -> list:
    return [t for t in trials if is_repeat(t)]


# --------------------------------------------------------------------------- the space

def is_finite(spec) -> bool:
    """True when every searched parameter takes finitely many values."""
    return all(p.distribution in ("categorical", "constant", "int_uniform", "q_uniform")
               for p in spec.searched)


def space_size(spec) -> Optional[int]:
    """The number of points of a finite space (None for a space with a continuous range)."""
    if not is_finite(spec):
        return None
    return math.prod(len(p.grid_values()) for p in spec.searched)


def random_point(spec, rng: random.Random) -> dict:
    """A point of the space drawn uniformly (log-uniformly for log ranges), as optuna params."""
    point = {}
    for param in spec.searched:
        if param.distribution in ("categorical", "int_uniform", "q_uniform"):
            point[param.name] = rng.choice(param.grid_values())
            continue
        low, high, log, _ = param.optuna_range()
        value = (math.exp(rng.uniform(math.log(low), math.log(high))) if log
                 else rng.uniform(low, high))
        if param.draws_int:
            value = min(max(int(round(value)), int(low)), int(high))
        point[param.name] = value
    return point


def untried_point(spec, key_of, held, rng: Optional[random.Random] = None) -> Optional[dict]:
    """A random point whose key (key_of(point)) is not in `held`; None when every point of a
    finite space is held."""
    rng = rng or random.Random()
    for _ in range(RANDOM_DRAWS):
        point = random_point(spec, rng)
        if key_of(point) not in held:
            return point
    if not is_finite(spec):
        return None  # practically impossible: a continuous range drawn 200 times over
    names = [p.name for p in spec.searched]
    untried = [dict(zip(names, values))
               for values in itertools.product(*(p.grid_values() for p in spec.searched))]
    untried = [point for point in untried if key_of(point) not in held]
    return rng.choice(untried) if untried else None
