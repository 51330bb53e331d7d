"""`--engine wandb`: the same sweep file run as a W&B sweep (wandb.sweep + wandb.agent).

W&B sweeps need the W&B server: there is no offline mode. Without credentials wandb would
wait at a login prompt, and with a key but no network it retries for ~100 s, so
`check_wandb_ready` looks for an API key and probes the server (short timeout) first and
fails at once with one line.
"""
from __future__ import annotations

import os
import socket
from typing import Optional
from urllib.parse import urlsplit

from ..errors import FastMLPError, first_line
from ..tracking import has_wandb_credentials, wandb_base_url

PROBE_TIMEOUT_SECONDS = 5
# How `wandb agent SWEEP_ID` (the CLI, outside fastmlp) would start a run: wandb expands
# ${args} to --name=value pairs, which are exactly `train`'s long flags.
AGENT_PROGRAM = "cli.py"
AGENT_COMMAND = ["${env}", "${interpreter}", "-m", "cli", "train", "--wandb-mode", "online"]


class WandbUnavailable(FastMLPError):
    """The W&B server cannot be used from here (offline, no API key, unreachable)."""


def wandb_sweep_config(spec, count: int, shared: Optional[dict] = None) -> dict:
    """The sweep config sent to wandb.sweep: the file, normalised, plus run_cap and command.
    shared: settings every run shares (supervisor.run_sweep): the dataset as a constant
    parameter, the others (--data-dir, --data, ...) as flags of the agents' command."""
    from ..config import SETTING, TrainConfig

    shared = dict(shared or {})
    parameters = {p.name: p.to_wandb() for p in spec.params}
    dataset = shared.pop("dataset", None)
    if dataset is not None and "dataset" not in parameters:
        parameters["dataset"] = {"distribution": "constant", "value": dataset}
    command = list(AGENT_COMMAND)
    defaults = TrainConfig().to_dict()
    for name, value in shared.items():
        if value != defaults[name]:
            command += SETTING[name].command_words(value, long=True)
    config = {
        "name": spec.name,
        "method": spec.method,
        "metric": {"name": spec.metric, "goal": spec.goal},
        "parameters": parameters,
        "run_cap": count,
        "program": AGENT_PROGRAM,
        "command": command + ["${args}"],
    }
    if spec.raw.get("early_terminate") is not None:
        config["early_terminate"] = dict(spec.raw["early_terminate"])
    if spec.raw.get("description"):
        config["description"] = str(spec.raw["description"])
    for key in ("project", "entity"):
        if getattr(spec, key):
            config[key] = getattr(spec, key)
    return config


def check_wandb_ready(wandb_mode: Optional[str] = None) -> None:
    """Raise WandbUnavailable unless online mode, an API key and the server are all there."""
    mode = wandb_mode or os.environ.get("WANDB_MODE")
    if mode in ("offline", "disabled", "dryrun"):
        source = "--wandb-mode" if wandb_mode else "WANDB_MODE"
        raise WandbUnavailable(
            f"--engine wandb runs the sweep on the W&B server, but {source} is {mode}; "
            "use the default --engine optuna to sweep offline")
    base_url = wandb_base_url()
    if not has_wandb_credentials(base_url):
        raise WandbUnavailable(
            f"--engine wandb needs a W&B API key for {base_url}: run `wandb login` or set "
            "WANDB_API_KEY (or use the default --engine optuna, which needs no account)")
    probe_server(base_url)


def probe_server(base_url: str) -> None:
    """Open (and close) a TCP connection to the server, or fail within a few seconds."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT_SECONDS).close()
    except OSError as error:
        raise WandbUnavailable(
            f"cannot reach the W&B server {parts.hostname}:{port} ({error}); "
            "use the default --engine optuna to sweep offline") from None


def create_wandb_sweep(config: dict, project: str, entity: Optional[str]) -> str:
    """wandb.sweep(config) -> sweep id; any failure becomes one line."""
    import wandb

    try:
        return wandb.sweep(config, project=project, entity=entity)
    except Exception as error:  # wandb raises many types (CommError, UsageError, ...)
        raise WandbUnavailable(f"W&B did not create the sweep: {first_line(error)}") from None
