"""Dataset dirs → batch samplers → collated micro-batches, resumable mid-epoch.

Inputs are the Arrow dirs written by ``sftdata prepare`` (one sequence per row: ``input_ids``,
``labels``, ``length``, ``source_index``) or ``sftdata pack`` (several sequences per row, with
``position_ids``/``seq_lengths``). Micro-batches come from
:class:`sftdata.collate.samplers.TokenBudgetBatchSampler` (a token budget per micro-batch and per
rank, equal batch counts on every rank) and are collated by
:class:`sftdata.collate.collators.PaddingFreeCollator` (default: one ``(1, T)`` row plus
``cu_seq_lens``) or :class:`sftdata.collate.collators.PaddingCollator` (``--no-padding-free``).

Prefix-tree rows (``sftdata prepare``'s tree layout, or packed trees; docs/trees.md) are trained
as trees by default: the collator adds ``subtree_end``/``shift_labels`` and the attention
computes each shared prefix once (:func:`layout_summary` says how much that saves).

Resuming: :class:`MicroBatchStream` is the run's data-position component
(:mod:`sftdata_train.checkpoint.state`): its state is the batch sampler's own ``state_dict`` (epoch, and
``num_yielded`` = the micro-batches the loop consumed in it, not the ones a ``DataLoader``
prefetched). Loading it hands that to the sampler's ``load_state_dict``, whose next iterator
starts at the first micro-batch not yet consumed, without replaying the ones before; so the data
after resuming is exactly the data an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from sftdata.errors import ConfigError

from .distributed import DistInfo

PREPARED_COLUMNS = ("input_ids", "labels")
PACKED_MARKER = "seq_lengths"


@dataclass
class SFTDataset:
    """A loaded dataset dir. ``kind`` is ``prepared`` or ``packed``; ``lengths`` are row lengths in tokens."""

    dataset: Any  # datasets.Dataset
    kind: str
    lengths: list[int]
    path: str | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def select(self, indices) -> "SFTDataset":
        """The rows ``indices`` (in that order) as a new :class:`SFTDataset`, lengths selected alike."""
        idx = list(indices)
        return SFTDataset(self.dataset.select(idx), self.kind, [self.lengths[i] for i in idx], self.path)


def load_sft_dataset(path: str | os.PathLike) -> SFTDataset:
    """Load a ``sftdata prepare``/``sftdata pack`` output dir (``datasets.save_to_disk``); a dir
    whose ``stats.json`` does not match its data is refused (:func:`sftdata.output.load.load_output`)."""
    path = str(path)
    if not os.path.isdir(path):
        raise ConfigError(f"data dir {path!r} does not exist (run `sftdata prepare` first)")
    if os.path.isfile(os.path.join(path, "dataset_dict.json")):
        if not os.path.isdir(os.path.join(path, "train")):
            raise ConfigError(f"{path!r} holds a DatasetDict without a 'train' split")
        path = os.path.join(path, "train")
    from sftdata.output.load import load_output  # checks that stats.json describes the data

    try:
        ds = load_output(path, verify="sizes" if os.path.isfile(os.path.join(path, "stats.json")) else "none")
    except ConfigError as e:
        raise ConfigError(f"{path!r} is not a complete `sftdata prepare`/`sftdata pack` output dir: {e}") from e
    missing = [c for c in PREPARED_COLUMNS if c not in ds.column_names]
    if missing:
        raise ConfigError(f"{path!r} lacks columns {missing}; expected `sftdata prepare`/`pack` output")
    kind = "packed" if PACKED_MARKER in ds.column_names else "prepared"
    if "length" in ds.column_names:
        lengths = [int(x) for x in ds["length"]]
    else:
        lengths = [len(x) for x in ds["input_ids"]]
    if len(ds) == 0:
        raise ConfigError(f"{path!r} has no rows")
    return SFTDataset(ds, kind, lengths, path)


def token_id_range(data: SFTDataset) -> tuple[int, int]:
    """``(min, max)`` token id of the ``input_ids`` column, computed on the Arrow table (no Python lists)."""
    import pyarrow.compute as pc

    table = data.dataset.data  # the whole underlying table: a superset of any selection of it
    flat = pc.list_flatten(table.column("input_ids"))
    mm = pc.min_max(flat)
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    return (int(lo) if lo is not None else 0), (int(hi) if hi is not None else -1)


def split_eval(data: SFTDataset, fraction: float, seed: int) -> tuple[SFTDataset, SFTDataset | None]:
    """Hold out ``ceil(fraction * rows)`` rows (a seeded random choice) as the eval split."""
    if fraction <= 0:
        return data, None
    n = len(data)
    k = max(1, int(math.ceil(fraction * n)))
    if k >= n:
        raise ConfigError(f"eval_fraction={fraction} leaves no training rows out of {n}")
    g = torch.Generator().manual_seed(seed + 7919)
    perm = torch.randperm(n, generator=g).tolist()
    held = sorted(perm[:k])
    train = sorted(perm[k:])
    return data.select(train), data.select(held)


def load_run_data(cfg) -> tuple[SFTDataset, SFTDataset | None]:
    """``(train, eval or None)`` of a run: ``cfg.data``, and ``cfg.eval_data`` or an ``eval_fraction`` split.

    Raises:
        ConfigError: packed or prefix-tree data with ``padding_free=False`` (packed sequences
            would attend to each other in a padded batch), or the errors of :func:`load_sft_dataset`.
    """
    train_data = load_sft_dataset(cfg.data)
    eval_data: SFTDataset | None = None
    if cfg.eval_data:
        eval_data = load_sft_dataset(cfg.eval_data)
    elif cfg.eval_fraction > 0:
        train_data, eval_data = split_eval(train_data, cfg.eval_fraction, cfg.seed)
    if not cfg.padding_free and "packed" in (train_data.kind, eval_data.kind if eval_data else ""):
        raise ConfigError("packed data (from `sftdata pack`) needs padding-free batches: drop --no-padding-free")
    if not cfg.padding_free and tree_rows(train_data) + (tree_rows(eval_data) if eval_data else 0):
        raise ConfigError("prefix-tree rows need padding-free batches (tree attention): drop --no-padding-free, "
                          "or prepare with --layout linear")
    return train_data, eval_data


def make_collator(*, padding_free: bool, pad_token_id: int, pad_to_multiple_of: int | None):
    """The ``sftdata.collate.collators`` collator for a run."""
    from sftdata.collate.collators import PaddingCollator, PaddingFreeCollator

    if padding_free:
        return PaddingFreeCollator(pad_to_multiple_of=pad_to_multiple_of, pad_token_id=pad_token_id)
    return PaddingCollator(pad_token_id, pad_to_multiple_of=pad_to_multiple_of)


def make_batch_sampler(
    lengths: list[int], *, max_tokens: int, padding_free: bool, shuffle: bool, seed: int, info: DistInfo
):
    """``TokenBudgetBatchSampler`` sharded over ranks (equal micro-batch counts on every rank)."""
    from sftdata.collate.samplers import TokenBudgetBatchSampler

    too_long = sum(1 for n in lengths if n > max_tokens)
    if too_long:
        warnings.warn(
            f"{too_long} rows are longer than max_tokens_per_batch={max_tokens} (longest {max(lengths)}): each "
            "gets a micro-batch of its own; raise --max-tokens-per-batch or truncate/pack to that budget to bound memory",
            stacklevel=2,
        )
    return TokenBudgetBatchSampler(
        lengths,
        max_tokens,
        padding_free=padding_free,
        shuffle=shuffle,
        seed=seed,
        num_replicas=info.world_size,
        rank=info.rank,
        drop_last=False,
    )


def _rows(dataset):
    """Drop columns no collator needs (keeps per-row conversion cheap)."""
    keep = [c for c in ("input_ids", "labels", "position_ids", "seq_lengths", "parent") if c in dataset.column_names]
    return dataset.select_columns(keep)


def tree_rows(data: SFTDataset) -> int:
    """Rows of ``data`` holding a prefix tree (a non-empty ``parent``)."""
    if "parent" not in data.dataset.column_names:
        return 0
    import pyarrow.compute as pc

    lengths = pc.list_value_length(data.dataset.with_format("arrow")["parent"])
    return int(pc.sum(pc.greater(lengths, 0)).as_py() or 0)


def layout_summary(data: SFTDataset) -> str:
    """One line on what the rows cost: tokens computed, and for prefix trees the tokens the same
    examples take in the linear layout (``linear_length``)."""
    tokens = sum(data.lengths)
    n_trees = tree_rows(data)
    if not n_trees:
        return f"data: {len(data):,} {data.kind} rows, {tokens:,} tokens (linear layout)"
    cols = data.dataset.column_names
    linear = None
    if "linear_length" in cols:
        import pyarrow.compute as pc

        linear = int(pc.sum(data.dataset.with_format("arrow")["linear_length"]).as_py() or 0)
    text = f"data: {len(data):,} {data.kind} rows, {n_trees:,} of them prefix trees, trained with tree attention: {tokens:,} tokens computed"
    if linear:
        text += f" vs {linear:,} in the linear layout ({linear / max(tokens, 1):.2f}x)"
    return text


class MicroBatchStream:
    """Endless stream of collated micro-batches over epochs, with a resumable position.

    ``epoch`` is the epoch being read and ``batch_in_epoch`` how many of its micro-batches were
    handed out; ``batches_per_epoch`` is the sampler's ``len``.

    Args:
        data: the training rows.
        sampler: a batch sampler with ``set_epoch``, ``state_dict``/``load_state_dict``
            (:class:`sftdata.collate.samplers.TokenBudgetBatchSampler`).
        collator: turns a list of rows into a micro-batch dict.
        num_workers, pin_memory: the ``DataLoader``'s.
        allow_plan_change: on :meth:`load_state_dict`, accept a position saved by a sampler with
            another plan (token budget, world size; ``--allow-schedule-change``): keep epoch and
            micro-batch count, take this sampler's plan.
    """

    def __init__(self, data: SFTDataset, sampler, collator, *, num_workers: int = 0, pin_memory: bool = False,
                 allow_plan_change: bool = False) -> None:
        self.data = data
        self.sampler = sampler
        self.collator = collator
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.allow_plan_change = allow_plan_change
        self.epoch = 0
        self.batch_in_epoch = 0
        self._it: Iterator | None = None
        self._rows = _rows(data.dataset)

    @property
    def batches_per_epoch(self) -> int:
        """Micro-batches per epoch on this rank (the same on every rank)."""
        return len(self.sampler)

    def state_dict(self) -> dict[str, Any]:
        """The sampler's state (``epoch``, ``num_yielded``, seed and plan fingerprint) at the
        micro-batches consumed so far (``num_yielded = batch_in_epoch``)."""
        return {**self.sampler.state_dict(), "epoch": self.epoch, "num_yielded": self.batch_in_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at ``state``'s position: the next micro-batch is the first one not consumed.

        ``state`` is :meth:`state_dict`'s, or the earlier ``{"epoch", "batch_in_epoch"}`` (the
        position alone: this sampler's seed and plan).

        Raises:
            ConfigError: the position was saved by a sampler with another plan (size of the data,
                token budget, world size) and ``allow_plan_change`` is false.
        """
        if "num_yielded" not in state:  # the earlier form
            state = {"epoch": state["epoch"], "num_yielded": state["batch_in_epoch"]}
        mine = self.sampler.state_dict()
        if self.allow_plan_change:
            state = {**state, **{k: v for k, v in mine.items() if k not in ("epoch", "num_yielded")}}
        try:
            self.sampler.load_state_dict(state)
        except ValueError as e:
            raise ConfigError(f"the checkpoint's data position does not fit this run's batch plan: {e}") from e
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["num_yielded"])
        self._it = None

    def _open(self) -> None:
        from torch.utils.data import DataLoader

        if self.batch_in_epoch >= self.batches_per_epoch:
            self.epoch += 1
            self.batch_in_epoch = 0
        self.sampler.set_epoch(self.epoch)  # the same epoch keeps a loaded position: iteration starts there
        loader = DataLoader(
            self._rows,
            batch_sampler=self.sampler,
            collate_fn=self.collator,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=False,
            # a private generator: without one, iter() draws the workers' base seed from the global
            # torch RNG, so a resumed run (which opens its iterator mid-epoch, after restoring the RNG)
            # would see other dropout masks than the uninterrupted run
            generator=torch.Generator().manual_seed(self.epoch),
        )
        self._it = iter(loader)

    def __iter__(self) -> "MicroBatchStream":
        return self

    def __next__(self) -> dict[str, Any]:
        for _ in range(2):
            if self._it is None:
                self._open()
            try:
                batch = next(self._it)
            except StopIteration:
                self._it = None
                self.batch_in_epoch = self.batches_per_epoch  # next _open rolls over
                continue
            self.batch_in_epoch += 1
            return batch
        raise RuntimeError("the batch sampler yielded no batch for a whole epoch")


def eval_batches(data: SFTDataset, *, max_tokens: int, padding_free: bool, info: DistInfo) -> list[list[int] | None]:
    """This rank's eval micro-batches (index lists), round-robin over ranks.

    Every rank gets the same number of entries (FSDP needs every rank in every forward); a
    ``None`` entry means "run a forward but count nothing", so each held-out row is counted once.
    """
    from sftdata.collate.samplers import TokenBudgetBatchSampler

    sampler = TokenBudgetBatchSampler(
        data.lengths, max(max_tokens, max(data.lengths)), padding_free=padding_free, shuffle=False, seed=0,
        num_replicas=1, rank=0, drop_last=False,
    )
    batches = list(sampler)
    rounds = int(math.ceil(len(batches) / info.world_size))
    mine: list[list[int] | None] = []
    for r in range(rounds):
        i = r * info.world_size + info.rank
        mine.append(batches[i] if i < len(batches) else None)
    return mine


def collate_indices(data: SFTDataset, indices: list[int], collator) -> dict[str, Any]:
    """Collate the rows ``indices`` of ``data`` (used for eval)."""
    rows = _rows(data.dataset)
    return collator([rows[i] for i in indices])


def batch_to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move tensors to ``device`` (non-blocking); ints and other values pass through."""
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def num_tokens(batch: dict[str, Any]) -> int:
    """Real (non-padding) tokens of a collated micro-batch."""
    if "attention_mask" in batch and batch["attention_mask"] is not None:
        return int(batch["attention_mask"].sum())
    cu = batch.get("cu_seq_lens_q")
    if cu is not None:
        return int(cu[-1])
    return int(batch["input_ids"].numel())


def sum_squared_lengths(batch: dict[str, Any]) -> int:
    """Σ L_i² over the sequences of a micro-batch (for attention FLOPs).

    A tree batch counts what tree attention computes: ``Σ (2 depth + 1)`` over its tokens, the
    query-key pairs of each token's own sequence in the same convention (``L²`` for a path).
    """
    if batch.get("subtree_end") is not None:
        return int((2 * batch["position_ids"].long() + 1).sum())
    cu = batch.get("cu_seq_lens_q")
    if cu is not None:
        lens = (cu[1:] - cu[:-1]).long()
        return int((lens * lens).sum())
    if "attention_mask" in batch and batch["attention_mask"] is not None:
        lens = batch["attention_mask"].sum(-1).long()
        return int((lens * lens).sum())
    b, t = batch["input_ids"].shape
    return b * t * t
