"""The one door to Weights & Biases: every wandb run fastmlp starts goes through WandbRun.

offline (default): written under <output_dir>/wandb (or $WANDB_DIR), `wandb sync` uploads
later. online: only when asked, and only with credentials (else one clear error, at once).
disabled: no wandb at all (wandb is not even imported).
"""
from __future__ import annotations

import netrc
import os
import threading
from pathlib import Path
from urllib.parse import urlsplit

from .errors import FastMLPError, first_line

DEFAULT_BASE_URL = "https://api.wandb.ai"
NEEDS_CREDENTIALS = ("wandb online mode needs credentials: run `wandb login` or set "
                     "WANDB_API_KEY (or use --wandb-mode offline)")


def preload_wandb(mode: str) -> None:
    """Online: import wandb (about a second) in the background while data and kernels load.
    (Offline, the trainer starts wandb after the epochs: nothing to hurry.)"""
    if mode == "online":
        import importlib

        threading.Thread(target=importlib.import_module, args=("wandb",), daemon=True).start()


def has_wandb_credentials(base_url: str | None = None) -> bool:
    """An API key in the environment or in the netrc file for the W&B server's host (the
    places `wandb login` writes). Never prompts, never imports wandb: it answers at once."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(base_url or wandb_base_url()).netloc
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def wandb_base_url() -> str:
    return os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL


class WandbRun:
    """A wandb run that never prompts and never hangs.

    wandb.init takes a second or more (it starts a service process): it runs in the
    background while the caller gets ready; ready() and every later call wait for it.
    """

    def __init__(self, mode: str, output_dir: Path, *, project: str, entity: str, name: str,
                 config: dict, group=None, job_type=None):
        self.run = None
        self._starting = None
        self._pending = []  # epoch records logged before wandb.init finished
        if mode == "disabled":
            return
        if mode == "online" and not has_wandb_credentials():
            raise FastMLPError(NEEDS_CREDENTIALS)
        wandb_dir = Path(os.environ.get("WANDB_DIR") or output_dir)
        wandb_dir.mkdir(parents=True, exist_ok=True)
        init_args = dict(project=project, entity=entity, name=name, group=group, config=config,
                         job_type=job_type, mode=mode, dir=str(wandb_dir),
                         reinit="finish_previous")
        self._init_error = None
        self._starting = threading.Thread(target=self._start, args=(init_args,), daemon=True)
        self._starting.start()

    @classmethod
    def for_training(cls, config, run_name: str, output_dir: Path) -> "WandbRun":
        """The wandb run of one `train` run (a sweep's trials share config.group)."""
        return cls(config.wandb_mode, output_dir, project=config.wandb_project,
                   entity=config.wandb_entity, name=run_name, config=config.to_dict(),
                   group=config.group)

    def _start(self, init_args):
        try:
            import wandb

            self.run = wandb.init(**init_args, settings=wandb.Settings(
                silent=True, console="off", init_timeout=60))
        except Exception as exc:  # wandb raises many types; the user needs one line
            self._init_error = FastMLPError(
                f"wandb could not start ({init_args['mode']}): {first_line(exc)}")

    def ready(self) -> bool:
        """Wait for wandb.init; True when there is a run to log to (the epochs logged while
        it started are sent first)."""
        if self._starting is not None:
            self._starting.join()
            self._starting = None
            if self._init_error is not None:
                raise self._init_error
        if self.run is not None and self._pending:
            for values in self._pending:
                self.run.log(values)
            self._pending.clear()
        return self.run is not None

    def starting(self) -> bool:
        """True while wandb.init is still running in the background."""
        return self._starting is not None and self._starting.is_alive()

    def log(self, values: dict) -> None:
        if self.ready():
            self.run.log(values)

    def log_epoch(self, record: dict) -> None:
        """An epoch's record, without its timing (wandb keeps its own). While wandb is still
        starting, the record waits in memory: training never waits for wandb."""
        values = {k: v for k, v in record.items() if k != "train_seconds"}
        if self.starting():
            self._pending.append(values)
        else:
            self.log(values)

    def log_images(self, images: dict) -> None:
        """{key: path of a PNG, or a list of (uint8 array, caption)} as wandb images."""
        if not self.ready():
            return
        import wandb

        self.run.log({key: wandb.Image(str(value)) if isinstance(value, (str, Path))
                      else [wandb.Image(image, caption=caption) for image, caption in value]
                      for key, value in images.items()})

    def log_results(self, summary: dict, labels, predictions, images: dict) -> None:
        """The end of a training run: test figures (the task's), the confusion matrix of a
        classifier, pictures (the regression ones too), summary."""
        if not self.ready():
            return
        import wandb

        test = {key: value for key, value in summary.items() if key.startswith("test_")}
        self.run.log(test)
        if "confusion_matrix" in summary:  # classification
            self.run.log({"confusion_matrix": wandb.plot.confusion_matrix(
                y_true=[int(v) for v in labels], preds=[int(v) for v in predictions],
                class_names=list(summary["class_names"]))})
        self.log_images(images)
        self.run.summary.update(test)

    def finish(self, exit_code: int = 0) -> None:
        try:
            ready = self.ready()
        except FastMLPError:
            ready = False  # it never started: nothing to finish
        if ready:
            self.run.finish(exit_code=exit_code)
            self.run = None
