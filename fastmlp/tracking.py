"""Where a run's numbers go: wandb (offline unless asked) and fastmlp's own metrics file."""
from __future__ import annotations

import inspect
import json
import os
import threading
from pathlib import Path

from .errors import FastMLPError


class MetricsFile:
    """metrics.jsonl: one JSON line per epoch, flushed as it is written."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, record: dict) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")


def preload_wandb(mode: str) -> None:
    """Import wandb (about a second) in the background while data and kernels load."""
    if mode != "disabled":
        import importlib

        threading.Thread(target=importlib.import_module, args=("wandb",), daemon=True).start()


class WandbRun:
    """A wandb run that never prompts and never hangs.

    offline (default): written under <output_dir>/wandb, `wandb sync` uploads later.
    online: only when asked, and only with credentials (else one clear error, at once).
    disabled: no wandb at all (wandb is not even imported).
    """

    def __init__(self, config, run_name: str, output_dir: Path):
        self.run = None
        self._starting = None
        if config.wandb_mode == "disabled":
            return
        if config.wandb_mode == "online":
            import wandb

            if not _wandb_api_key(wandb):
                raise FastMLPError("wandb online mode needs credentials: run `wandb login` or "
                                   "set WANDB_API_KEY (or use --wandb-mode offline)")
        wandb_dir = Path(os.environ.get("WANDB_DIR") or output_dir)
        wandb_dir.mkdir(parents=True, exist_ok=True)
        init_args = dict(project=config.wandb_project, entity=config.wandb_entity, name=run_name,
                         group=config.group, config=config.to_dict(), mode=config.wandb_mode,
                         dir=str(wandb_dir), reinit="finish_previous")
        # wandb.init takes a second or more (it starts a service process): it runs in the
        # background while the caller gets ready; ready() and every later call wait for it.
        self._init_error = None
        self._starting = threading.Thread(target=self._start, args=(init_args,), daemon=True)
        self._starting.start()

    def _start(self, init_args):
        try:
            import wandb

            self.run = wandb.init(**init_args, settings=wandb.Settings(
                silent=True, console="off", init_timeout=60))
        except Exception as exc:  # wandb raises many types; the user needs one line
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._init_error = FastMLPError(
                f"wandb could not start ({init_args['mode']}): {first_line}")

    def ready(self) -> bool:
        """Wait for wandb.init; True when there is a run to log to."""
        if self._starting is not None:
            self._starting.join()
            self._starting = None
            if self._init_error is not None:
                raise self._init_error
        return self.run is not None

    def log(self, values: dict) -> None:
        if self.ready():
            self.run.log(values)

    def log_confusion_matrix(self, labels, predictions, class_names) -> None:
        if not self.ready():
            return
        import wandb

        self.run.log({"confusion_matrix": wandb.plot.confusion_matrix(
            y_true=[int(v) for v in labels], preds=[int(v) for v in predictions],
            class_names=list(class_names))})

    def log_images(self, images: dict) -> None:
        """{key: path of a PNG} as wandb images."""
        if not self.ready():
            return
        import wandb

        self.run.log({key: wandb.Image(str(path)) for key, path in images.items()})

    def summary(self, values: dict) -> None:
        if self.ready():
            self.run.summary.update(values)

    def finish(self, exit_code: int = 0) -> None:
        try:
            ready = self.ready()
        except FastMLPError:
            ready = False  # it never started: nothing to finish
        if ready:
            self.run.finish(exit_code=exit_code)
            self.run = None


def _wandb_api_key(wandb):
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        # Newer wandb prints a deprecation warning for `wandb.api` and offers
        # login(prompt=False), which looks the key up (settings, .netrc) and never prompts.
        if "prompt" in inspect.signature(wandb.login).parameters:
            return bool(wandb.login(prompt=False, verify=False))
        return bool(wandb.api.api_key)
    except Exception:
        return False
