"""The training loop: :class:`Trainer` (set-up, :meth:`~Trainer.train_step`, eval, checkpoints) and :func:`train`.

One optimizer step = ``grad_accum`` micro-batches on every rank (:mod:`sftdata_train.loop.step`: the
loss of the step is normalised by the trained tokens of all of them on all ranks). The run's
state (model, optimizer, scheduler, RNG, data position, counters) is a set of
:mod:`sftdata_train.checkpoint.state` components behind one
:class:`~sftdata_train.checkpoint.manager.CheckpointManager`; resuming asks it to load a
checkpoint into them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import directories as ckpt
from ..lora import merge as lora_merge
from ..config.train_config import TrainConfig, as_config
from ..data import batch_to_device, collate_indices
from ..distributed import all_reduce_sum
from ..checkpoint.export import export_model
from .interrupt import Interrupted, StopRequest, stop_requests
from .metrics import MetricsLogger, Throughput, peak_memory_gb
from ..setup import RunSetup
from .step import StepOutput, optimizer_step
from .tracking import open_trackers


@dataclass
class TrainResult:
    """Returned by :func:`train`.

    ``losses[i]`` is the loss of optimizer step ``first_step + i + 1`` (every step run by this
    call); ``eval_losses`` maps step -> eval loss.
    """

    output_dir: Path
    step: int
    first_step: int
    losses: list[float] = field(default_factory=list)
    eval_losses: dict[int, float] = field(default_factory=dict)
    last_checkpoint: Path | None = None
    final_model_dir: Path | None = None
    completed: bool = False


class Trainer(RunSetup):
    """Builds everything from a :class:`TrainConfig` (:class:`~sftdata_train.setup.RunSetup`) and runs
    the loop (:meth:`fit`): :meth:`train_step`, :meth:`evaluate`, :meth:`save_checkpoint`, :meth:`export`.

    Attributes of interest: ``hf_model`` (the transformers model), ``wrapper``
    (:class:`SFTLossModel`, FSDP2 root when distributed), ``optimizer``, ``scheduler``,
    ``stream`` (:class:`MicroBatchStream`, the data position), ``counters`` (``step``, the
    optimizer steps done, and the token counters, also readable as attributes), ``total_steps``,
    ``checkpointer`` (the :class:`~sftdata_train.checkpoint.manager.CheckpointManager` over all of them).
    Constructor: :meth:`RunSetup.__init__ <sftdata_train.setup.RunSetup.__init__>`.
    """

    # ------------------------------------------------------------------ one step
    def train_step(self, micro_batches: list[dict[str, Any]]) -> StepOutput:
        """One optimizer step over this rank's ``micro_batches`` (:func:`sftdata_train.loop.step.optimizer_step`).

        Does not advance ``step`` (:meth:`fit` does); counts a dropped update in ``skipped_steps``.

        Raises:
            FloatingPointError: a non-finite gradient norm with ``nonfinite_grad=stop``.
        """
        out = optimizer_step(micro_batches, wrapper=self.wrapper, optimizer=self.optimizer, scheduler=self.scheduler,
                             config=self.config, info=self.info, device=self.device, fsdp=self.fsdp,
                             flops_shape=self._flops_shape, step=self.step)
        if out.skipped:
            self.counters.skipped_steps += 1
        return out

    # ------------------------------------------------------------------ eval
    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Mean NLL per trained token over the whole held-out split (all ranks), or None without one."""
        if self.eval_plan is None:
            return None
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)
        first = next((b for b in self.eval_plan if b is not None), None)
        was_training = self.wrapper.training
        self.wrapper.eval()
        for idx in self.eval_plan:
            if idx is None and first is None:
                continue
            batch = collate_indices(self.eval_data, idx if idx is not None else first, self.collator)
            batch = batch_to_device(batch, self.device)
            loss_sum, n = self.wrapper(**batch)
            if idx is not None:
                sums[0] += loss_sum.double()
                sums[1] += n.double()
        self.wrapper.train(was_training)
        all_reduce_sum(sums, self.info)
        return float(sums[0] / sums[1].clamp_min(1))

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """Write ``checkpoint-<step>`` with every component (all ranks must call); returns its path."""
        return self.checkpointer.save(self.step)

    def export(self) -> Path:
        """Write the model alone to ``<output_dir>/final`` in ``save_dtype`` (LoRA: the adapter, or with
        ``merge_lora`` the merged model; :func:`sftdata_train.lora.merge.export`)."""
        sd = self.config.save_dtype
        if sd == "auto":
            dtype = torch.bfloat16 if self.config.precision.startswith("bf16") else torch.float32
        else:
            dtype = getattr(torch, sd)
        if self.adapter is not None:
            return lora_merge.export(self.output_dir / "final", adapter=self.adapter, wrapper=self.wrapper,
                               hf_model=self.hf_model, tokenizer=self.tokenizer, info=self.info, cfg=self.config,
                               dtype=dtype)
        return export_model(
            self.output_dir / "final", wrapper=self.wrapper, hf_model=self.hf_model, tokenizer=self.tokenizer,
            info=self.info, dtype=dtype,
        )

    def _stop_requested(self, stop: StopRequest) -> bool:
        """Whether any rank got SIGINT/SIGTERM (all ranks agree: one tiny all-reduce per step when distributed)."""
        if self.info.world_size == 1:
            return stop.requested
        flag = torch.tensor([int(stop.requested)], dtype=torch.int64, device=self.device)
        all_reduce_sum(flag, self.info)
        return bool(flag.item())

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainResult:
        """Run until ``total_steps`` (or ``stop_at_step``); checkpoints, eval and metrics as configured.

        Raises:
            Interrupted: SIGINT/SIGTERM (with :func:`train`), after the current step and a checkpoint.
            FloatingPointError: a non-finite gradient norm with ``nonfinite_grad=stop``.
        """
        cfg = self.config
        result = TrainResult(output_dir=self.output_dir, step=self.step, first_step=self.step)
        logger = self._open_logger()
        interval = _Interval()
        last_saved = self.step if self.resume_path is not None else -1
        end = min(self.total_steps, cfg.stop_at_step if cfg.stop_at_step is not None else self.total_steps)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        stop = self.stop_request
        try:
            if stop is not None:
                stop.in_loop = True
            while self.step < end:
                out = self.train_step([next(self.stream) for _ in range(cfg.grad_accum)])
                self.counters.step += 1
                self.counters.tokens_seen += out.tokens
                self.counters.trained_tokens_seen += out.trained_tokens
                result.losses.append(out.loss)
                interval.add(out)
                is_last = self.step >= end
                record = self._step_record(out, interval) if self.step % cfg.log_steps == 0 or is_last else None
                record = self._maybe_evaluate(record, is_last, result, interval.meter)
                if record is not None:
                    logger.log(record)
                logger.advance()
                if (cfg.save_steps and self.step % cfg.save_steps == 0) or is_last:
                    result.last_checkpoint = self.save_checkpoint()
                    last_saved = self.step
                    interval.meter.reset()
                if stop is not None and self._stop_requested(stop):
                    if last_saved != self.step:
                        result.last_checkpoint = self.save_checkpoint()
                    raise Interrupted(step=self.step, checkpoint=ckpt.latest_checkpoint(self.output_dir),
                                      output_dir=self.output_dir, signal_name=stop.signal_name)
            self._finish(result, last_saved)
        finally:
            if stop is not None:
                stop.in_loop = False
            logger.close()
        result.step = self.step
        return result

    def _open_logger(self) -> MetricsLogger:
        """``config.yaml`` written, trackers opened and the metrics logger (rank 0 writes; others log nothing)."""
        cfg, info = self.config, self.info
        if info.is_main:
            cfg.to_yaml(self.output_dir / "config.yaml")
        trackers = (
            open_trackers(cfg.trackers(), self.output_dir, config=cfg.to_dict(), project=cfg.project,
                          run_name=cfg.run_name)
            if info.is_main else []
        )
        return MetricsLogger(
            self.output_dir, enabled=info.is_main, total_steps=self.total_steps, start_step=self.step,
            progress_bar=cfg.progress_bar, trackers=trackers,
        )

    def _step_record(self, out: StepOutput, interval: "_Interval") -> dict[str, Any]:
        """The metrics record of this step: the interval's token-weighted loss, rates, position, counters."""
        rates = interval.meter.rates(world_size=self.info.world_size, peak_tflops=self.peak_tflops,
                                     measured_tflops=self.measured_tflops)
        stream = self.stream
        record = {
            "step": self.step,
            "loss": interval.loss() if interval.trained else out.loss,
            "lr": out.lr,
            "grad_norm": out.grad_norm,
            **rates,
            "peak_memory_gb": peak_memory_gb(self.device),
            "epoch": stream.epoch + stream.batch_in_epoch / max(1, stream.batches_per_epoch),
            "tokens": self.tokens_seen,
            "trained_tokens": self.trained_tokens_seen,
            "skipped_steps": self.skipped_steps,
        }
        interval.reset()
        return record

    def _maybe_evaluate(self, record: dict[str, Any] | None, is_last: bool, result: TrainResult,
                        meter: Throughput) -> dict[str, Any] | None:
        """Evaluate when due (every ``eval_steps`` and after the last step); the record gains ``eval_loss``."""
        cfg = self.config
        due = self.eval_plan is not None and (
            (cfg.eval_steps and self.step % cfg.eval_steps == 0) or (is_last and self.step == self.total_steps)
        )
        if not due:
            return record
        eval_loss = self.evaluate()
        result.eval_losses[self.step] = eval_loss
        record = record or {"step": self.step}
        record["eval_loss"] = eval_loss
        meter.reset()
        return record

    def _finish(self, result: TrainResult, last_saved: int) -> None:
        """After the last step: a checkpoint if the last step has none, and ``final/`` when complete."""
        if last_saved != self.step and self.step > 0:
            result.last_checkpoint = self.save_checkpoint()
        elif result.last_checkpoint is None and self.resume_path is not None:
            result.last_checkpoint = self.resume_path
        result.completed = self.step >= self.total_steps
        if result.completed:
            result.final_model_dir = self.export()


class _Interval:
    """Throughput and the token-weighted loss since the last metrics record."""

    def __init__(self) -> None:
        self.meter = Throughput()
        self.loss_sum, self.trained = 0.0, 0

    def add(self, out: StepOutput) -> None:
        self.meter.add(out.tokens, out.trained_tokens, out.flops)
        if not out.skipped:  # a dropped update's (non-finite) loss stays out of the logged mean
            self.loss_sum += out.loss * out.trained_tokens
            self.trained += out.trained_tokens

    def loss(self) -> float:
        return self.loss_sum / max(self.trained, 1)

    def reset(self) -> None:
        self.loss_sum, self.trained = 0.0, 0
        self.meter.reset()


def train(config: TrainConfig | dict | str | os.PathLike) -> TrainResult:
    """Train as configured (a :class:`TrainConfig`, a dict of its keys, or a YAML path).

    Under ``torchrun`` every rank calls this; the process group is created (and destroyed at the
    end) here when ``WORLD_SIZE > 1``. Returns a :class:`TrainResult` (same on every rank,
    except that only rank 0 writes files).

    Raises :class:`sftdata_train.loop.interrupt.Interrupted` on SIGINT/SIGTERM: during the loop after
    finishing the current step and saving a checkpoint; elsewhere (or on a second signal) at once,
    naming the newest complete checkpoint.
    """
    cfg = as_config(config)
    trainer: Trainer | None = None
    with stop_requests() as stop:
        try:
            trainer = Trainer(cfg)
            trainer.stop_request = stop
            return trainer.fit()
        except Interrupted:
            raise
        except KeyboardInterrupt:  # a signal outside the loop, or a second one: keep the newest complete checkpoint
            out = Path(cfg.output_dir)
            last = ckpt.latest_checkpoint(out)
            step = int(last.name.rsplit("-", 1)[1]) if last is not None else 0
            raise Interrupted(step=step, checkpoint=last, output_dir=out, signal_name=stop.signal_name) from None
        finally:
            if trainer is not None and trainer.owns_process_group:
                from ..distributed import cleanup

                cleanup()
