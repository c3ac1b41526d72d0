"""Building a run from its config: data, tokenizer, model, batches, optimizer and the checkpoint manager.

:class:`RunSetup` is the set-up half of :class:`sftdata_train.loop.Trainer`: rank 0 decides the
resume point and checks the output dir, then data, tokenizer (checked against the data), model
(sharded under FSDP2; its vocabulary checked against the data), batch sampler and micro-batch
stream, compile and activation checkpointing, optimizer and schedule, and the
:class:`~sftdata_train.checkpoint.manager.CheckpointManager` over the run's
:mod:`sftdata_train.checkpoint.state` components; resuming asks the manager to load the checkpoint into them.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any

import torch

from .checkpoint import directories as ckpt
from .loop import guards
from .lora import adapter as lora
from .build import build_model, describe_run, resolve_precision, speed_and_memory
from .checkpoint.manager import CheckpointManager
from .compat import require_torch
from .config.train_config import TrainConfig, as_config
from .data import (
    MicroBatchStream,
    eval_batches,
    layout_summary,
    load_run_data,
    make_batch_sampler,
    make_collator,
    token_id_range,
)
from .distributed import DistInfo, decide_on_main, init_distributed
from .loop.interrupt import StopRequest
from .loop.metrics import measure_bf16_peak_tflops
from .model.loading import count_matmul_params, load_tokenizer
from .loop.optim import build_optimizer, build_scheduler
from .loop.peaks import datasheet_bf16_tflops
from .checkpoint.state import ModelState, OptimizerState, RngState, RunSchedule, TrainCounters


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


class RunSetup:
    """Everything a run needs, built from a :class:`TrainConfig` (the base of
    :class:`sftdata_train.loop.Trainer`, which adds the step, eval, checkpoints and the loop).

    Attributes of interest: ``hf_model`` (the transformers model), ``wrapper``
    (:class:`SFTLossModel`, FSDP2 root when distributed), ``optimizer``, ``scheduler``,
    ``stream`` (:class:`MicroBatchStream`, the data position), ``counters``
    (:class:`~sftdata_train.checkpoint.state.TrainCounters`: ``step``, the optimizer steps done, and the
    token counters, also readable as attributes), ``total_steps``, ``checkpointer`` (the
    :class:`~sftdata_train.checkpoint.manager.CheckpointManager` holding all of the above),
    ``owns_process_group`` (this object created the process group: :func:`sftdata_train.train`
    destroys it at the end).
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

        Raises:
            ConfigError: a refused output dir, resume point, data, tokenizer or schedule change.
        """
        require_torch()
        cfg = self.config = as_config(config)
        self.owns_process_group = info is None and int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.info = info = info or init_distributed(cfg.device)
        self.device = info.device
        cfg.precision = resolve_precision(cfg.precision, self.device, lora=lora.enabled(cfg))
        self.output_dir = Path(cfg.output_dir)
        self.resume_path = self._resume_point()
        _seed_everything(cfg.seed)
        self.train_data, self.eval_data = load_run_data(cfg)
        self.data_summary = layout_summary(self.train_data)
        self._announce(self.data_summary)
        model = self._load_tokenizer(tokenizer, model)
        self._build_model(model)
        self._build_batches()
        tokens = max(cfg.max_tokens_per_batch, max(self.train_data.lengths))
        tuned = speed_and_memory(cfg, wrapper=self.wrapper, hf_model=self.hf_model, info=info,
                                 precision=cfg.precision, tokens=tokens, fsdp=self.fsdp)
        self.compiled, self.memory_plan = tuned["compiled"], tuned["plan"]
        self.optimizer = build_optimizer(self.wrapper, cfg, self.device)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.total_steps)
        self.counters = TrainCounters()
        self.checkpointer = self._checkpoint_manager()
        if self.resume_path is not None:
            self.checkpointer.load(self.resume_path)
            self._announce(f"resumed from {self.resume_path.name} ({self.resume_path}): step {self.step} "
                           f"of {self.total_steps}, {self.tokens_seen:,} tokens seen")
        self.stop_request: StopRequest | None = None  # set by train(): SIGINT/SIGTERM stop at a step boundary
        self._measure_peak()
        self._announce(self.describe())

    # ------------------------------------------------------------------ set-up, one part each
    def _announce(self, line: str) -> None:
        if self.info.is_main:
            print(f"sftdata-train: {line}", file=sys.stderr, flush=True)

    def _resume_point(self) -> Path | None:
        """The checkpoint to resume from (rank 0 decides, everyone follows), the output dir checked."""
        cfg = self.config

        def decide() -> str | None:
            found = ckpt.resolve_resume(cfg.resume, cfg.output_dir)
            guards.check_output_dir(cfg.output_dir, resume=cfg.resume, overwrite=cfg.overwrite)
            self.output_dir.mkdir(parents=True, exist_ok=True)
            return str(found) if found else None

        resume = decide_on_main(decide, self.info)
        path = Path(resume) if resume else None
        if path is not None:
            lora.check_resume(path, cfg)  # LoRA: same adapter keys and base model
        return path

    def _load_tokenizer(self, tokenizer: Any, model: torch.nn.Module | None) -> torch.nn.Module | None:
        """Set ``self.tokenizer`` (checked against the data); returns the model to build from."""
        cfg = self.config
        if self.resume_path is not None:
            tokenizer = None
            model = model if lora.enabled(cfg) else None  # LoRA: the checkpoint holds the adapter, not the base
            tok_src: str | None = str(self.resume_path)
        else:
            tok_src = cfg.tokenizer or cfg.model
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(tok_src)
        if cfg.check_tokenizer:
            for d in self._datasets():
                guards.check_tokenizer(d.path, self.tokenizer, tokenizer_source=tok_src or "the embedded tokenizer")
        return model

    def _datasets(self) -> list:
        return [d for d in (self.train_data, self.eval_data) if d is not None]

    def _build_model(self, model: torch.nn.Module | None) -> None:
        """The model (sharded under FSDP2), then its vocabulary against the data."""
        cfg, info = self.config, self.info
        built = build_model(cfg, info=info, precision=cfg.precision, tokenizer=self.tokenizer, model=model,
                            resume_path=self.resume_path)
        self.hf_model, self.wrapper, self.fsdp = built["hf_model"], built["wrapper"], built["fsdp"]
        self.adapter: lora.Adapter | None = built["adapter"]  # LoRA/QLoRA (peft), else None
        self.owns_process_group = self.owns_process_group or built["created_pg"]
        rows = self.hf_model.get_input_embeddings().weight.shape[0]
        for d in self._datasets():
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

    def _build_batches(self) -> None:
        """Collator, batch sampler, the micro-batch stream, ``total_steps`` and the eval plan."""
        cfg, info = self.config, self.info
        self.collator = make_collator(
            padding_free=cfg.padding_free, pad_token_id=self.tokenizer.pad_token_id,
            pad_to_multiple_of=cfg.pad_to_multiple_of,
        )
        self.sampler = make_batch_sampler(
            self.train_data.lengths, max_tokens=cfg.max_tokens_per_batch, padding_free=cfg.padding_free,
            shuffle=cfg.shuffle, seed=cfg.seed, info=info,
        )
        self.stream = MicroBatchStream(
            self.train_data, self.sampler, self.collator, num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda", allow_plan_change=cfg.allow_schedule_change,
        )
        if cfg.max_steps > 0:
            self.total_steps = cfg.max_steps
        else:
            self.total_steps = max(1, int(cfg.num_epochs * self.stream.batches_per_epoch // cfg.grad_accum))
        self.eval_plan = (
            eval_batches(self.eval_data, max_tokens=cfg.max_tokens_per_batch, padding_free=cfg.padding_free, info=info)
            if self.eval_data is not None
            else None
        )

    def _checkpoint_manager(self) -> CheckpointManager:
        """Every piece of state a resumed run needs, as components of one manager."""
        cfg, info = self.config, self.info
        schedule = RunSchedule(world_size=info.world_size, max_tokens_per_batch=cfg.max_tokens_per_batch,
                               grad_accum=cfg.grad_accum, total_steps=self.total_steps,
                               allow_change=cfg.allow_schedule_change)
        return CheckpointManager(
            self.output_dir, info,
            tensors={"model": ModelState(self.wrapper, trainable_only=self.adapter is not None),
                     "optim": OptimizerState(self.wrapper, self.optimizer), "rng": RngState(info.rank)},
            records={"schedule": schedule, "counters": self.counters, "data": self.stream},
            files={"scheduler": self.scheduler},
            metadata=lambda: {"runtime": self.describe(), "config": self.config.to_dict()},
            write_files=self._write_checkpoint_files, save_total_limit=cfg.save_total_limit,
        )

    def _write_checkpoint_files(self, tmp: Path) -> None:
        """The model's HF config (LoRA: the adapter in peft's format) and the tokenizer (all ranks call)."""
        adapter_state = self.adapter.trainable_state(self.wrapper, self.info) if self.adapter else None  # collective
        if self.info.is_main:
            if self.adapter is None:
                self.hf_model.config.save_pretrained(str(tmp))
            else:
                self.adapter.save(tmp, adapter_state)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(str(tmp))

    def _measure_peak(self) -> None:
        """The peak bf16 TFLOP/s for MFU: datasheet (or ``peak_tflops``) and measured, on CUDA."""
        self.peak_tflops = self.config.peak_tflops
        self.measured_tflops = None
        if self.device.type == "cuda":
            if self.peak_tflops is None:
                self.peak_tflops = datasheet_bf16_tflops(torch.cuda.get_device_name(self.device))
            if self.info.is_main:  # RNG-neutral (private generator, states restored)
                self.measured_tflops = measure_bf16_peak_tflops(self.device)

    # ------------------------------------------------------------------ counters (the TrainCounters component)
    @property
    def step(self) -> int:
        """Optimizer steps done."""
        return self.counters.step

    @step.setter
    def step(self, value: int) -> None:
        """Set the optimizer steps done (``counters.step``)."""
        self.counters.step = int(value)

    @property
    def tokens_seen(self) -> int:
        """Real tokens trained on so far, over all ranks."""
        return self.counters.tokens_seen

    @property
    def trained_tokens_seen(self) -> int:
        """Trained tokens (loss positions) so far, over all ranks."""
        return self.counters.trained_tokens_seen

    @property
    def skipped_steps(self) -> int:
        """Updates dropped for a non-finite gradient norm (``nonfinite_grad=skip``)."""
        return self.counters.skipped_steps

    def describe(self) -> str:
        """One line: device, precision, attention, compile and activation checkpointing as resolved."""
        line = describe_run(self.config, self.info, fsdp=self.fsdp, compiled=self.compiled, memory_plan=self.memory_plan)
        return line + (f", {lora.describe(self.adapter, self.wrapper)}" if self.adapter else "")



__all__ = ["RunSetup"]
