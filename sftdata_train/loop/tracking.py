"""Experiment trackers (``--report-to tensorboard,wandb,trackio``) through each library's own API.

Every tracker receives, on rank 0, exactly the records written to ``metrics.jsonl`` (see
:mod:`sftdata_train.loop.metrics`): each numeric value is logged at the record's ``step`` under
``train/<key>`` (``loss``, ``lr``, ``grad_norm``, ``tokens_per_s``, ``trained_tokens_per_s``,
``mfu``, ``peak_memory_gb``, ``epoch``, ``tokens``, ``trained_tokens``, …) or, for keys starting
with ``eval_``, ``eval/<rest>`` (``eval_loss`` → ``eval/loss``), the names the transformers
``Trainer`` integrations use. ``None`` values (e.g. MFU on a CPU) are not logged. The resolved
training config is logged once at start: as the run config (W&B, trackio) or as a text summary
``config`` (TensorBoard).

* ``tensorboard``: ``torch.utils.tensorboard.SummaryWriter`` writing ``<output_dir>/tensorboard``
  (package ``tensorboard``).
* ``wandb``: ``wandb.init(project=…, name=…, dir=<output_dir>, config=…)`` then ``wandb.log``;
  honours ``WANDB_MODE=offline`` and the other ``WANDB_*`` variables. The run id is kept in
  ``<output_dir>/wandb_run_id`` so a resumed run continues the same W&B run.
* ``trackio``: ``trackio.init(project=…, name=…, config=…, resume="allow")`` then ``trackio.log``;
  local-first (``TRACKIO_DIR``, default ``~/.cache/huggingface/trackio``).

A requested tracker whose package is missing is a :class:`~sftdata.errors.ConfigError` naming
the package (raised by :func:`check_installed`, which ``TrainConfig.validate`` calls).
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from sftdata.errors import ConfigError

#: tracker name → (import name, pip package)
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"), "trackio": ("trackio", "trackio")}
DEFAULT_PROJECT = "sftdata"


def parse_report_to(value: str | Sequence[str] | None) -> list[str]:
    """``"tensorboard,wandb"`` / ``["wandb"]`` / ``"none"`` / None → list of tracker names."""
    from ..config.aliases import report_to_string

    text = report_to_string(value)
    return [] if text == "none" else text.split(",")


def check_installed(names: Sequence[str]) -> None:
    """Raise :class:`ConfigError` naming the package to install for the first missing tracker."""
    for name in names:
        if name not in PACKAGES:
            raise ConfigError(f"report_to: unknown tracker {name!r} (choose from {', '.join(PACKAGES)}, none)")
        module, package = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"report_to {name} needs the `{package}` package, which is not installed: pip install {package}"
            )


def metric_items(record: Mapping[str, Any]) -> dict[str, float]:
    """The tracker view of one ``metrics.jsonl`` record: ``{"train/loss": …, "eval/loss": …}``.

    Non-numeric, ``None``, boolean and non-finite values and the ``step`` key are left out.
    """
    out: dict[str, float] = {}
    for key, value in record.items():
        if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        tag = f"eval/{key[len('eval_'):]}" if key.startswith("eval_") else f"train/{key}"
        out[tag] = value
    return out


class TensorBoardTracker:
    """``SummaryWriter`` under ``<output_dir>/tensorboard``: one scalar per metric and step."""

    name = "tensorboard"

    def __init__(self, output_dir: str | os.PathLike, config: Mapping[str, Any] | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(output_dir) / "tensorboard"
        self.writer = SummaryWriter(str(self.log_dir))
        if config:
            import yaml

            text = yaml.safe_dump(dict(config), sort_keys=False)
            self.writer.add_text("config", "".join("    " + line + "\n" for line in text.splitlines()), 0)

    def log(self, record: Mapping[str, Any]) -> None:
        """Write the record's numeric metrics as scalars at its ``step``."""
        for tag, value in metric_items(record).items():
            self.writer.add_scalar(tag, value, int(record["step"]))

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.flush()
        self.writer.close()


class WandbTracker:
    """A W&B run (``wandb.init`` / ``wandb.log`` / ``wandb.finish``); offline with ``WANDB_MODE=offline``."""

    name = "wandb"

    def __init__(self, output_dir: str | os.PathLike, config: Mapping[str, Any] | None, *, project: str | None,
                 run_name: str | None) -> None:
        import wandb

        id_file = Path(output_dir) / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        self.run = wandb.init(
            project=project, name=run_name, dir=str(output_dir), config=dict(config or {}),
            id=run_id, resume="allow" if run_id else None,
        )
        id_file.write_text(self.run.id + "\n")

    def log(self, record: Mapping[str, Any]) -> None:
        """Log the record's numeric metrics at its ``step``."""
        self.run.log(metric_items(record), step=int(record["step"]))

    def close(self) -> None:
        """Finish the W&B run."""
        self.run.finish()


class TrackioTracker:
    """A trackio run (``trackio.init`` / ``trackio.log`` / ``trackio.finish``), stored locally."""

    name = "trackio"

    def __init__(self, config: Mapping[str, Any] | None, *, project: str | None, run_name: str | None) -> None:
        import trackio

        self._trackio = trackio
        trackio.init(project=project or DEFAULT_PROJECT, name=run_name, config=dict(config or {}), resume="allow",
                     embed=False)

    def log(self, record: Mapping[str, Any]) -> None:
        """Log the record's numeric metrics at its ``step``."""
        self._trackio.log(metric_items(record), step=int(record["step"]))

    def close(self) -> None:
        """Finish the trackio run."""
        self._trackio.finish()


def open_trackers(
    names: Sequence[str], output_dir: str | os.PathLike, *, config: Mapping[str, Any] | None = None,
    project: str | None = None, run_name: str | None = None,
) -> list:
    """Start one tracker per name (call on rank 0 only).

    Args:
        names: tracker names (``tensorboard``, ``wandb``, ``trackio``).
        output_dir: the run's output dir (TensorBoard events and the W&B files go under it).
        config: the resolved config logged with the run.
        project: W&B/trackio project (W&B: None = ``WANDB_PROJECT`` or W&B's default;
            trackio: None = ``sftdata``).
        run_name: run name (default: the output dir's name).

    Raises:
        ConfigError: a tracker's package is not installed.
    """
    check_installed(names)
    run_name = run_name or Path(output_dir).resolve().name
    trackers: list = []
    try:
        for name in names:
            if name == "tensorboard":
                trackers.append(TensorBoardTracker(output_dir, config))
            elif name == "wandb":
                trackers.append(WandbTracker(output_dir, config, project=project, run_name=run_name))
            elif name == "trackio":
                trackers.append(TrackioTracker(config, project=project, run_name=run_name))
    except BaseException:
        for t in trackers:
            t.close()
        raise
    return trackers
