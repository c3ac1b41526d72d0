"""The keys of a pipeline config, their types, and the errors and hints for bad or foreign keys.

Every check appends ``"<key path>: <reason>"`` to an :class:`Errors` list instead of raising, so
that one run of :func:`sftdata.pipeline.load_config` reports every problem of the file at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any, Callable

from ..errors import ConfigError
from ..options import LAYOUTS, OPTION_NAMES, SPECIAL_TOKEN_MODES, TOOL_ARGUMENTS, TRUNCATIONS, TURN_POLICIES
from ..suggest import did_you_mean

#: Options of the masking path (:class:`~sftdata.options.EncodeOptions`): allowed at the top level
#: (defaults for every dataset) and in each dataset (overrides).
ENCODE_KEYS = OPTION_NAMES
#: ``datasets.load_dataset`` arguments of one dataset entry.
SOURCE_KEYS = ("path", "name", "split", "data_files", "data_dir", "revision", "streaming", "load_kwargs")
DATASET_KEYS = ("label", *SOURCE_KEYS, "tools_file", "weight", "num_rows", *ENCODE_KEYS)
TOP_KEYS = ("output_dir", "datasets", "tokenizer", "chat_template", "seed", "on_error", "num_proc", "pack", "train",
            *ENCODE_KEYS)
PACK_KEYS = ("max_length", "strategy", "truncation", "shuffle")

#: The message for a training key written at the top level of a pipeline config.
TRAIN_KEY_HINT = "a training option: put it under `train:`"

_PREP = "sftdata prepare --{flag}; in a pipeline config: `{key}:` at the top level or per dataset"
_TOP = "sftdata prepare --{flag}; in a pipeline config: `{key}:` at the top level"
_PACK = ("packing is its own stage: `sftdata pack DATA --max-length L` (or `sftdata prepare --pack L`); in a pipeline "
         "config: `pack: L` at the top level")
_MASK = ("sftdata always trains exactly what the model generates (the assistant turns): remove it; which turns: "
         "`turn_policy` and `train_roles` (" + _PREP.format(flag="turn-policy / --train-roles", key="turn_policy") + ")")
_DATASETS = ("data is prepared before training: `sftdata prepare PATH_OR_HUB_ID`; in a pipeline config: list it "
             "under `datasets:` (- path: NAME)")
_MAX_LENGTH = "use `max_length`, a data option: " + _PREP.format(flag="max-length", key="max_length")

#: Keys of the data stages, and other tools' names for them → ONE message each, the same wherever the key is
#: written: the top level of a pipeline config, its ``train:`` section, ``sftdata-train``'s flags or YAML.
DATA_KEY_HINTS = {
    "dataset_name": _DATASETS, "dataset": _DATASETS, "datasets": _DATASETS, "dataset_dir": _DATASETS,
    "dataset_config": "the Hub dataset's config: sftdata prepare --dataset-config NAME; in a pipeline config: "
                      "`datasets: [{path: ..., name: CONFIG}]`",
    "dataset_config_name": "the Hub dataset's config: sftdata prepare --dataset-config NAME; in a pipeline config: "
                           "`datasets: [{path: ..., name: CONFIG}]`",
    "dataset_train_split": "sftdata prepare --split NAME; in a pipeline config: `datasets: [{path: ..., split: train}]`",
    "dataset_test_split": "hold out rows with the training option eval_fraction, or prepare the test split and "
                          "give it as eval_data",
    "max_length": "a data option: " + _PREP.format(flag="max-length", key="max_length")
                  + "; packed rows: `sftdata pack --max-length L` (`pack: L`)",
    "max_seq_length": _MAX_LENGTH, "sequence_len": _MAX_LENGTH, "cutoff_len": _MAX_LENGTH, "max_seq_len": _MAX_LENGTH,
    "packing": _PACK, "sample_packing": _PACK, "packing_strategy": _PACK, "eval_packing": _PACK, "pack": _PACK,
    "neat_packing": _PACK + " (packed sequences never attend to each other in sftdata)",
    "pad_to_sequence_len": _PACK + " (packed rows are filled up to L); batch shapes in training: pad_to_multiple_of",
    "template": "use `chat_template`, a data option (a jinja file or the template text; default: the tokenizer's): "
                + _TOP.format(flag="chat-template", key="chat_template"),
    "chat_template_path": "use `chat_template`, a data option: " + _TOP.format(flag="chat-template", key="chat_template"),
    "chat_template": "a data option (the rows are rendered when prepared): "
                     + _TOP.format(flag="chat-template", key="chat_template"),
    "dataset_text_field": "sftdata reads conversations: name the column holding them with `messages_field`, or "
                          "`format: text` for plain text (" + _PREP.format(flag="messages-field / --format",
                                                                           key="messages_field") + ")",
    "eos_token": "the stop token comes from the chat template; to name it: `stop_tokens` ("
                 + _PREP.format(flag="stop-tokens", key="stop_tokens") + ")",
    "pad_token": "padding never reaches the loss (labels -100) and the pad id is the tokenizer's: remove it",
    "assistant_only_loss": _MASK, "completion_only_loss": _MASK, "train_on_inputs": _MASK,
    "train_on_prompt": _MASK, "train_on_responses_only": _MASK,
    "mask_history": "use `turn_policy: last` (only the last assistant turn trained; "
                    + _PREP.format(flag="turn-policy", key="turn_policy") + ")",
    "dataset_num_proc": "use `num_proc`: " + _TOP.format(flag="num-proc", key="num_proc"),
    "preprocessing_num_workers": "use `num_proc`: " + _TOP.format(flag="num-proc", key="num_proc"),
    "dataset_streaming": "give `streaming` per dataset in a pipeline config (load_dataset inputs stream by default)",
    "streaming": "give `streaming` per dataset in a pipeline config (load_dataset inputs stream by default)",
    "dataset_kwargs": "give `load_kwargs` per dataset in a pipeline config",
    "max_samples": "give `num_rows` per dataset in a pipeline config",
    "mix_strategy": "give each dataset a `weight` (fraction or multiple of its rows) or `num_rows` in a pipeline config",
    "interleave_probs": "give each dataset a `weight` (fraction or multiple of its rows) or `num_rows` in a pipeline "
                        "config",
    "dataset_prepared_path": "the prepared data goes under the pipeline config's `output_dir`",
    "truncation_mode": "use `truncation: drop|turns`, a data option: " + _PREP.format(flag="truncation", key="truncation"),
    "shuffle_dataset": "the data order follows the training seed (and `shuffle`): remove it",
    "overwrite_cache": "stages re-run when their inputs change (fingerprints); `sftdata run --force` re-runs all",
}
for _key in ENCODE_KEYS + ("on_error", "num_proc", "tools_file"):  # sftdata's own data options, outside their place
    DATA_KEY_HINTS.setdefault(_key, f"a data option: sftdata prepare --{_key.replace('_', '-')}; in a pipeline "
                                    f"config: `{_key}:` at the top level" + ("" if _key in ("on_error", "num_proc")
                                                                             else " or per dataset"))
#: Keys only the top level of a pipeline config gets a hint for (valid under ``train:``).
TOP_HINTS = {k: "use `train.model` (and `tokenizer` at the top level if it differs)"
             for k in ("model", "model_name_or_path", "base_model")}

#: Keys other tools use in a dataset entry → their sftdata name.
DATASET_HINTS = {
    "type": "use `format` (openai, sharegpt, parts, prompt_completion, alpaca, text; omit to detect)",
    "formatting": "use `format` (openai, sharegpt, parts, prompt_completion, alpaca, text; omit to detect)",
    "ds_type": "use `format`, or path: json/parquet/csv with data_files",
    "field_messages": "use `messages_field`",
    "field_tools": "use `tools_field`",
    "columns": "use `messages_field` / `tools_field`",
    "roles_to_train": "use `train_roles`",
    "file_name": "use `path`",
    "hf_hub_url": "use `path` (a Hub id)",
    "subset": "use `name` (the dataset config)",
    "num_samples": "use `num_rows`",
    "max_samples": "use `num_rows`",
}


class Errors(list):
    """Collected ``"<path>: <reason>"`` messages; :meth:`raise_if_any` raises them as one ConfigError."""

    def add(self, path: str, message: str) -> None:
        """Record ``path: message`` (``path``: the key path, e.g. ``datasets[1].format``)."""
        self.append(f"{path}: {message}")

    def raise_if_any(self, where: str) -> None:
        """Raise every recorded message at once.

        Raises:
            ConfigError: ``<where>: N errors:`` then one indented line per message (when any).
        """
        if self:
            n = len(self)
            raise ConfigError(f"{where}: {n} error{'s' if n > 1 else ''}:\n  " + "\n  ".join(self))


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def check_keys(d: Mapping, allowed: Iterable[str], prefix: str, errors: Errors, hints: Mapping[str, str] = {},
               also: Mapping[str, str] = {}) -> None:
    """Unknown keys of ``d``: a hint when another tool's name is known, else a "did you mean"."""
    allowed = tuple(allowed)
    for key in d:
        if key in allowed:
            continue
        if key in also:
            errors.add(_join(prefix, str(key)), also[key])
        elif hints.get(key):
            errors.add(_join(prefix, str(key)), hints[key])
        else:
            hint = did_you_mean(str(key), allowed)
            errors.add(_join(prefix, str(key)), f"unknown key; {hint}" if hint else
                       f"unknown key (keys: {', '.join(allowed)})")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check(value: Any, ok: Callable[[Any], bool], what: str, path: str, errors: Errors) -> bool:
    """Append ``path: expected <what>, got …`` unless ``ok(value)``; returns whether it passed."""
    if ok(value):
        return True
    errors.add(path, f"expected {what}, got {_type_name(value)} {value!r}"[:300])
    return False


def is_int(v: Any) -> bool:
    """Whether ``v`` is an int (``True``/``False`` are not)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """Whether ``v`` is an int or a float (``True``/``False`` are not)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_str_list(v: Any) -> bool:
    """Whether ``v`` is a list or tuple of strings."""
    return isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)


def str_list(v: Any) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` → ``("a", "b")``."""
    items = v.split(",") if isinstance(v, str) else v
    return tuple(s.strip() for s in items if s.strip())


def _either(values: tuple[str, ...]) -> str:
    """``exact, all or last``: the choices of a key, for its error message."""
    return ", ".join(values[:-1]) + " or " + values[-1]


#: Value checks of the encode options: key → (predicate, expected).
ENCODE_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "turn_policy": (lambda v: v in TURN_POLICIES, _either(TURN_POLICIES)),
    "layout": (lambda v: v in LAYOUTS, _either(LAYOUTS)),
    "tool_arguments": (lambda v: v in TOOL_ARGUMENTS, _either(TOOL_ARGUMENTS)),
    "stop_tokens": (lambda v: v is None or isinstance(v, str) or is_str_list(v), "a list of tokens or null"),
    "render_timeout": (lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0), "seconds or null"),
    "render_max_chars": (lambda v: v is None or (is_int(v) and v >= 1), "a positive integer or null"),
    "max_messages": (lambda v: v is None or (is_int(v) and v >= 1), "a positive integer or null"),
    "row_render_max_chars": (lambda v: v is None or (is_int(v) and v >= 1), "a positive integer or null"),
    "row_timeout": (lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0), "seconds or null"),
    "row_max_memory_mb": (lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0), "MiB or null"),
    "clock": (lambda v: v is None or isinstance(v, (str, datetime, date)), "an ISO 8601 date-time (2026-01-31T09:00:00) or null"),
    "train_roles": (lambda v: isinstance(v, str) or is_str_list(v), "a list of roles or 'a,b'"),
    "train_reasoning": (lambda v: isinstance(v, bool), "true or false"),
    "trim_trailing": (lambda v: isinstance(v, bool), "true or false"),
    "max_length": (lambda v: v is None or (is_int(v) and v >= 1), "a positive integer or null"),
    "truncation": (lambda v: v in TRUNCATIONS, _either(TRUNCATIONS)),
    "template_kwargs": (lambda v: isinstance(v, Mapping), "a mapping"),
    "special_tokens_in_content": (lambda v: v in SPECIAL_TOKEN_MODES, _either(SPECIAL_TOKEN_MODES)),
    "end_of_turn": (lambda v: v is None or isinstance(v, str) or is_str_list(v), "a list of tokens or null"),
    "format": (lambda v: v is None or isinstance(v, str), "a format name or null"),
    "messages_field": (lambda v: v is None or isinstance(v, str), "a key or null"),
    "tools_field": (lambda v: v is None or isinstance(v, str), "a key or null"),
}
