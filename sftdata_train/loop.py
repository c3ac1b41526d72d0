"""The training loop: :class:`Trainer` (set-up, :meth:`~Trainer.train_step`, eval, checkpoints) and :func:`train`.

One optimizer step = ``grad_accum`` micro-batches on every rank. Before running them, the
trained tokens of all of them are counted and summed over ranks (``N``); each micro-batch
then back-propagates ``loss_sum * world_size / N`` (the reduce-scatter/all-reduce averages over
ranks), so the gradient is exactly that of the per-token mean over the whole global step.
"""

from __future__ import annotations

import math
import os
import random
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import checkpoint as ckpt, guards, lora, lora_merge
from .build import build_model, describe_run, resolve_precision, speed_and_memory
from .compat import require_torch
from .config import TrainConfig, as_config
from .data import (
    MicroBatchStream,
    layout_summary,
    batch_to_device,
    collate_indices,
    eval_batches,
    load_run_data,
    make_batch_sampler,
    make_collator,
    num_tokens,
    sum_squared_lengths,
    token_id_range,
)
from .distributed import DistInfo, all_reduce_sum, decide_on_main, init_distributed
from .interrupt import Interrupted, StopRequest, stop_requests
from .loss import count_trained_tokens
from .metrics import MetricsLogger, Throughput, measure_bf16_peak_tflops, peak_memory_gb, step_flops
from .model import count_matmul_params, load_tokenizer
from .optim import build_optimizer, build_scheduler
from .peaks import datasheet_bf16_tflops
from .resume import restore, resume_state
from .tracking import open_trackers


@dataclass
class StepOutput:
    """What one optimizer step did. ``loss`` is the SFT loss of the step (nats per trained token)."""

    loss: float
    grad_norm: float
    lr: float
    trained_tokens: int  # over all ranks
    tokens: int  # real tokens over all ranks
    flops: float  # over all ranks
    skipped: bool = False  # non-finite gradient norm: no update (nonfinite_grad=skip)


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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


def _count_trained(mb: dict[str, Any]) -> int:
    return count_trained_tokens(mb.get("labels"), mb.get("shift_labels"))


class Trainer:
    """Builds everything from a :class:`TrainConfig` and runs the loop (:meth:`fit`).

    Attributes of interest: ``hf_model`` (the transformers model), ``wrapper``
    (:class:`SFTLossModel`, FSDP2 root when distributed), ``optimizer``, ``scheduler``,
    ``stream`` (:class:`MicroBatchStream`), ``step`` (optimizer steps done), ``total_steps``.
    """

    def __init__(
        self,
        config: TrainConfig | dict | str,
        *,
        info: DistInfo | None = None,
        model: torch.nn.Module | None = None,
        tokenizer: Any = None,
    ) -> None:
        """Args:
            config: a :class:`TrainConfig`, a dict of its keys, or a YAML path.
            info: where this process runs (default: from the torchrun environment).
            model, tokenizer: an already built HF causal LM / tokenizer to train instead of loading
                ``config.model`` (e.g. a model built from a config in a benchmark). Ignored when resuming.
        """
        require_torch()
        cfg = as_config(config)
        self.config = cfg
        self._owns_pg = info is None and int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.info = info or init_distributed(cfg.device)
        info = self.info
        self.device = info.device
        cfg.precision = resolve_precision(cfg.precision, self.device, lora=lora.enabled(cfg))
        self.output_dir = Path(cfg.output_dir)

        # ---- resume point and output dir (rank 0 decides, everyone follows)
        def decide() -> str | None:
            found = ckpt.resolve_resume(cfg.resume, cfg.output_dir)
            guards.check_output_dir(cfg.output_dir, resume=cfg.resume, overwrite=cfg.overwrite)
            self.output_dir.mkdir(parents=True, exist_ok=True)
            return str(found) if found else None

        resume = decide_on_main(decide, info)
        self.resume_path = Path(resume) if resume else None
        if self.resume_path is not None:
            lora.check_resume(self.resume_path, cfg)  # LoRA: same adapter keys and base model
        _seed_everything(cfg.seed)

        # ---- data
        self.train_data, self.eval_data = train_data, eval_data = load_run_data(cfg)
        self.data_summary = layout_summary(train_data)
        if self.info.is_main:
            print(f"sftdata-train: {self.data_summary}", file=sys.stderr, flush=True)

        # ---- tokenizer, checked against the data
        if self.resume_path is not None:
            tokenizer = None
            model = model if lora.enabled(cfg) else None  # LoRA: the checkpoint holds the adapter, not the base
            tok_src: str | None = str(self.resume_path)
        else:
            tok_src = cfg.tokenizer or cfg.model
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(tok_src)
        datasets_ = [d for d in (train_data, eval_data) if d is not None]
        if cfg.check_tokenizer:
            for d in datasets_:
                guards.check_tokenizer(d.path, self.tokenizer, tokenizer_source=tok_src or "the embedded tokenizer")

        # ---- model (sharded under FSDP2), then its vocabulary against the data
        built = build_model(cfg, info=info, precision=cfg.precision, tokenizer=self.tokenizer, model=model,
                            resume_path=self.resume_path)
        self.hf_model, self.wrapper, self.fsdp = built["hf_model"], built["wrapper"], built["fsdp"]
        self.adapter: lora.Adapter | None = built["adapter"]  # LoRA/QLoRA (peft), else None
        self._owns_pg = self._owns_pg or built["created_pg"]
        rows = self.hf_model.get_input_embeddings().weight.shape[0]
        for d in datasets_:
            lo, hi = token_id_range(d)
            guards.check_token_ids(hi, lo, vocab_rows=rows, data_path=str(d.path),
                                   model_source=str(self.resume_path or cfg.model or "(embedded default)"))
        mc = self.hf_model.config
        self._flops_shape = dict(
            matmul_params=lora.flops_params(self.hf_model) if self.adapter else count_matmul_params(self.hf_model),
            n_layers=mc.num_hidden_layers,
            n_heads=mc.num_attention_heads,
            head_dim=getattr(mc, "head_dim", None) or mc.hidden_size // mc.num_attention_heads,
        )

        # ---- batches
        self.collator = make_collator(
            padding_free=cfg.padding_free, pad_token_id=self.tokenizer.pad_token_id,
            pad_to_multiple_of=cfg.pad_to_multiple_of,
        )
        self.sampler = make_batch_sampler(
            train_data.lengths, max_tokens=cfg.max_tokens_per_batch, padding_free=cfg.padding_free,
            shuffle=cfg.shuffle, seed=cfg.seed, info=info,
        )
        self.stream = MicroBatchStream(
            train_data, self.sampler, self.collator, num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        if cfg.max_steps > 0:
            self.total_steps = cfg.max_steps
        else:
            self.total_steps = max(1, int(cfg.num_epochs * self.stream.batches_per_epoch // cfg.grad_accum))
        self.eval_plan = (
            eval_batches(eval_data, max_tokens=cfg.max_tokens_per_batch, padding_free=cfg.padding_free, info=info)
            if eval_data is not None
            else None
        )

        # ---- speed and memory: compile, activation checkpointing (after the weights are on the device)
        tokens = max(cfg.max_tokens_per_batch, max(train_data.lengths))
        tuned = speed_and_memory(cfg, wrapper=self.wrapper, hf_model=self.hf_model, info=info,
                                 precision=cfg.precision, tokens=tokens, fsdp=self.fsdp)
        self.compiled, self.memory_plan = tuned["compiled"], tuned["plan"]

        # ---- optimisation
        self.optimizer = build_optimizer(self.wrapper, cfg, self.device)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.total_steps)
        self.step = 0
        self.tokens_seen = 0
        self.trained_tokens_seen = 0
        self.skipped_steps = 0
        if self.resume_path is not None:
            self._restore(self.resume_path)
            if info.is_main:
                print(f"sftdata-train: resumed from {self.resume_path.name} ({self.resume_path}): step {self.step} "
                      f"of {self.total_steps}, {self.tokens_seen:,} tokens seen", file=sys.stderr, flush=True)
        self.stop_request: StopRequest | None = None  # set by train(): SIGINT/SIGTERM stop at a step boundary
        self.peak_tflops = cfg.peak_tflops
        self.measured_tflops = None
        if self.device.type == "cuda":
            if self.peak_tflops is None:
                self.peak_tflops = datasheet_bf16_tflops(torch.cuda.get_device_name(self.device))
            if info.is_main:  # RNG-neutral (private generator, states restored)
                self.measured_tflops = measure_bf16_peak_tflops(self.device)
        if info.is_main:
            print(f"sftdata-train: {self.describe()}", file=sys.stderr, flush=True)

    def describe(self) -> str:
        """One line: device, precision, attention, compile and activation checkpointing as resolved."""
        line = describe_run(self.config, self.info, fsdp=self.fsdp, compiled=self.compiled, memory_plan=self.memory_plan)
        return line + (f", {lora.describe(self.adapter, self.wrapper)}" if self.adapter else "")

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        return resume_state(self)

    def _restore(self, path: Path) -> None:
        restore(self, path)

    # ------------------------------------------------------------------ one step
    def _grad_norm(self, params: list[torch.nn.Parameter]) -> torch.Tensor:
        """Global L2 norm of the gradients of ``params`` (those holding one; over all shards
        under FSDP2), before clipping."""
        grads = [p.grad for p in params]
        if not grads:
            return torch.zeros((), device=self.device)
        total = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
        if hasattr(total, "full_tensor"):  # DTensor under FSDP2: reduce over shards
            total = total.full_tensor()
        return total

    def train_step(self, micro_batches: list[dict[str, Any]]) -> StepOutput:
        """One optimizer step over this rank's ``micro_batches`` (collated, on CPU or device).

        The loss is normalised by the trained tokens of all micro-batches on all ranks. The
        gradient norm is checked *before* ``optimizer.step()``: a non-finite norm stops the run
        (``FloatingPointError``, nothing applied) or, with ``nonfinite_grad=skip``, drops this
        update (``skipped=True``; the schedule still advances).
        """
        info, cfg = self.info, self.config
        counts = torch.tensor(
            [
                sum(_count_trained(mb) for mb in micro_batches),
                sum(num_tokens(mb) for mb in micro_batches),
                sum(sum_squared_lengths(mb) for mb in micro_batches),
            ],
            dtype=torch.int64,
            device=self.device,
        )
        all_reduce_sum(counts, info)
        n_global, tokens, sumsq = (int(x) for x in counts.tolist())
        scale = info.world_size / max(n_global, 1)
        loss_acc = torch.zeros((), dtype=torch.float32, device=self.device)
        self.wrapper.train()
        for i, mb in enumerate(micro_batches):
            if self.fsdp:
                last = i == len(micro_batches) - 1
                self.wrapper.set_requires_gradient_sync(last or not cfg.fsdp_defer_grad_sync)
            mb = batch_to_device(mb, self.device)
            loss_sum, _ = self.wrapper(**mb)
            (loss_sum * scale).backward()
            loss_acc += loss_sum.detach()
        params = [p for p in self.wrapper.parameters() if p.grad is not None]  # once per step: norm and clipping
        grad_norm = self._grad_norm(params)
        lr = self.optimizer.param_groups[0]["lr"]
        all_reduce_sum(loss_acc, info)
        loss = float(loss_acc) / max(n_global, 1)
        flops = step_flops(tokens=tokens, sum_sq_lengths=sumsq, **self._flops_shape)
        norm = float(grad_norm)  # one host sync per step, outside any compiled region
        skipped = not math.isfinite(norm)
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
            if cfg.nonfinite_grad == "stop":
                raise FloatingPointError(
                    f"non-finite gradient norm {norm} (loss {loss}) at step {self.step + 1}: no update applied; "
                    "--nonfinite-grad skip drops such updates instead"
                )
            self.skipped_steps += 1
        else:
            if cfg.max_grad_norm and cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grads_with_norm_(params, cfg.max_grad_norm, grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # a skipped update steps the schedule without optimizer.step()
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            self.scheduler.step()
        return StepOutput(loss=loss, grad_norm=norm, lr=lr, trained_tokens=n_global, tokens=tokens, flops=flops,
                          skipped=skipped)

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
        """Write ``checkpoint-<step>`` (all ranks must call)."""
        return ckpt.save_checkpoint(
            self.output_dir, self.step, wrapper=self.wrapper, hf_model=self.hf_model, tokenizer=self.tokenizer,
            optimizer=self.optimizer, scheduler=self.scheduler, state=self._state(), info=self.info,
            save_total_limit=self.config.save_total_limit, adapter=self.adapter,
        )

    def export(self) -> Path:
        """Write the model alone to ``<output_dir>/final`` in ``save_dtype`` (LoRA: the adapter, or with
        ``merge_lora`` the merged model; :func:`sftdata_train.lora_merge.export`)."""
        sd = self.config.save_dtype
        if sd == "auto":
            dtype = torch.bfloat16 if self.config.precision.startswith("bf16") else torch.float32
        else:
            dtype = getattr(torch, sd)
        if self.adapter is not None:
            return lora_merge.export(self.output_dir / "final", adapter=self.adapter, wrapper=self.wrapper,
                               hf_model=self.hf_model, tokenizer=self.tokenizer, info=self.info, cfg=self.config,
                               dtype=dtype)
        return ckpt.export_model(
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
        """Run until ``total_steps`` (or ``stop_at_step``); checkpoints, eval and metrics as configured."""
        cfg, info = self.config, self.info
        result = TrainResult(output_dir=self.output_dir, step=self.step, first_step=self.step)
        if info.is_main:
            cfg.to_yaml(self.output_dir / "config.yaml")
        trackers = (
            open_trackers(cfg.trackers(), self.output_dir, config=cfg.to_dict(), project=cfg.project,
                          run_name=cfg.run_name)
            if info.is_main else []
        )
        logger = MetricsLogger(
            self.output_dir, enabled=info.is_main, total_steps=self.total_steps, start_step=self.step,
            progress_bar=cfg.progress_bar, trackers=trackers,
        )
        meter = Throughput()
        interval_loss, interval_trained = 0.0, 0
        last_saved = self.step if self.resume_path is not None else -1
        stop_at = cfg.stop_at_step if cfg.stop_at_step is not None else self.total_steps
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        stop = self.stop_request
        try:
            if stop is not None:
                stop.in_loop = True
            while self.step < min(self.total_steps, stop_at):
                micro = [next(self.stream) for _ in range(cfg.grad_accum)]
                out = self.train_step(micro)
                self.step += 1
                self.tokens_seen += out.tokens
                self.trained_tokens_seen += out.trained_tokens
                result.losses.append(out.loss)
                meter.add(out.tokens, out.trained_tokens, out.flops)
                if not out.skipped:  # a dropped update's (non-finite) loss stays out of the logged mean
                    interval_loss += out.loss * out.trained_tokens
                    interval_trained += out.trained_tokens
                is_last = self.step >= min(self.total_steps, stop_at)
                record: dict[str, Any] | None = None
                if self.step % cfg.log_steps == 0 or is_last:
                    rates = meter.rates(world_size=info.world_size, peak_tflops=self.peak_tflops,
                                        measured_tflops=self.measured_tflops)
                    record = {
                        "step": self.step,
                        "loss": interval_loss / max(interval_trained, 1) if interval_trained else out.loss,
                        "lr": out.lr,
                        "grad_norm": out.grad_norm,
                        **rates,
                        "peak_memory_gb": peak_memory_gb(self.device),
                        "epoch": self.stream.epoch + self.stream.batch_in_epoch / max(1, self.stream.batches_per_epoch),
                        "tokens": self.tokens_seen,
                        "trained_tokens": self.trained_tokens_seen,
                        "skipped_steps": self.skipped_steps,
                    }
                    interval_loss, interval_trained = 0.0, 0
                    meter.reset()
                do_eval = self.eval_plan is not None and (
                    (cfg.eval_steps and self.step % cfg.eval_steps == 0) or (is_last and self.step == self.total_steps)
                )
                if do_eval:
                    eval_loss = self.evaluate()
                    result.eval_losses[self.step] = eval_loss
                    record = record or {"step": self.step}
                    record["eval_loss"] = eval_loss
                    meter.reset()
                if record is not None:
                    logger.log(record)
                logger.advance()
                if (cfg.save_steps and self.step % cfg.save_steps == 0) or is_last:
                    result.last_checkpoint = self.save_checkpoint()
                    last_saved = self.step
                    meter.reset()
                if stop is not None and self._stop_requested(stop):
                    if last_saved != self.step:
                        result.last_checkpoint = self.save_checkpoint()
                    raise Interrupted(step=self.step, checkpoint=ckpt.latest_checkpoint(self.output_dir),
                                      output_dir=self.output_dir, signal_name=stop.signal_name)
            if last_saved != self.step and self.step > 0:
                result.last_checkpoint = self.save_checkpoint()
            elif result.last_checkpoint is None and self.resume_path is not None:
                result.last_checkpoint = self.resume_path
            result.completed = self.step >= self.total_steps
            if result.completed:
                result.final_model_dir = self.export()
        finally:
            if stop is not None:
                stop.in_loop = False
            logger.close()
        result.step = self.step
        return result


def train(config: TrainConfig | dict | str | os.PathLike) -> TrainResult:
    """Train as configured (a :class:`TrainConfig`, a dict of its keys, or a YAML path).

    Under ``torchrun`` every rank calls this; the process group is created (and destroyed at the
    end) here when ``WORLD_SIZE > 1``. Returns a :class:`TrainResult` (same on every rank,
    except that only rank 0 writes files).

    Raises :class:`sftdata_train.interrupt.Interrupted` on SIGINT/SIGTERM: during the loop after
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
            if trainer is not None and trainer._owns_pg:
                from .distributed import cleanup

                cleanup()
