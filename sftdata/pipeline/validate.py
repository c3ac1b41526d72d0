"""Reading and validating a pipeline config (one YAML file for prepare → mix → pack → train).

:func:`load_config` reads the file (or a mapping), applies ``--set key.path=value`` overrides,
checks **every** key before anything runs (all problems reported at once, each named by its
key path, with "did you mean" suggestions) and returns a
:class:`~sftdata.pipeline.config.PipelineConfig` in which every default is filled in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from ..options import EncodeOptions
from ..errors import ConfigError
from ..suggest import did_you_mean
from ..tools_file import read_tools_file
from . import keys as K
from .config import DatasetEntry, PackSpec, PipelineConfig, TrainStage, options_dict

_LABEL = re.compile(r"^[A-Za-z0-9_.-]+$")

def read_yaml(path: str | os.PathLike) -> dict:
    """Parse a YAML file into a mapping; raises :class:`ConfigError` for a missing file or bad YAML."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Apply ``key.path=value`` overrides (value parsed as YAML; ``datasets.0.weight=2`` indexes lists)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key.path=value, got {item!r}")
        dotted, text = item.split("=", 1)
        value = yaml.safe_load(text) if text.strip() else None
        parts = dotted.strip().split(".")
        node: Any = data
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {dotted}: {'.'.join(parts[:i]) or 'list'} has no item {part}")
                if last:
                    node[int(part)] = value
                else:
                    if parts[0] == "datasets" and isinstance(node[int(part)], str):
                        node[int(part)] = {"path": node[int(part)]}  # the `- path` shorthand
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if node.get(part) is None:
                        node[part] = {}
                    node = node[part]
            else:
                raise ConfigError(f"--set {dotted}: {'.'.join(parts[:i])} is not a mapping or a list")
    return data


def load_config(source: str | os.PathLike | Mapping, overrides: Sequence[str] = (), *,
                trainer: TrainStage | None = None) -> PipelineConfig:
    """Read and validate a pipeline config.

    Args:
        source: a YAML file path or a mapping of config keys.
        overrides: ``key.path=value`` strings applied first (``train.max_steps=5``).
        trainer: what checks and runs the ``train:`` section (:data:`sftdata_train.pipeline.TRAINER`;
            :func:`sftdata_train.pipeline.load_config` passes it). Without it a ``train:`` section is an
            error: the data package does not import the trainer.

    Returns:
        The resolved :class:`PipelineConfig`.

    Raises:
        ConfigError: listing every bad key of the file with its key path
            (``datasets[1].fromat: unknown key; did you mean 'format'?``).
    """
    import copy

    if isinstance(source, Mapping):
        data, where = copy.deepcopy(dict(source)), "pipeline config"
    else:
        data, where = read_yaml(source), str(source)
    data = apply_overrides(data, overrides)
    cfg = _build(data, where, trainer)
    cfg.path = None if isinstance(source, Mapping) else str(source)
    return cfg


def _check_encode(d: Mapping, prefix: str, errors: K.Errors) -> dict[str, Any]:
    """The encode options given in ``d``, checked and normalised."""
    from ..formats import FORMATS

    out: dict[str, Any] = {}
    for key in K.ENCODE_KEYS:
        if key not in d:
            continue
        value = d[key]
        path = f"{prefix}.{key}" if prefix else key
        if key in K.ENCODE_CHECKS and not K.check(value, *K.ENCODE_CHECKS[key], path, errors):
            continue
        if key == "format" and value is not None and value not in FORMATS:
            hint = did_you_mean(value, FORMATS)
            errors.add(path, f"unknown format {value!r}; " + (hint or f"formats: {', '.join(FORMATS)}"))
            continue
        if key in ("train_roles", "end_of_turn", "stop_tokens") and value is not None:
            value = K.str_list(value)
        out[key] = value
    return out


def _label_for(path: str) -> str:
    base = os.path.basename(path.rstrip("/*?[]")) or "dataset"
    for suffix in (".gz", ".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".csv", ".arrow", ".txt", ".py"):
        if base.lower().endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("._") or "dataset"


def _check_source(d: Mapping, prefix: str, errors: K.Errors) -> dict[str, Any] | None:
    from ..formats.hub import resolve_source

    src = {k: d.get(k) for k in K.SOURCE_KEYS}
    if src["load_kwargs"] is None:
        src["load_kwargs"] = {}
    ok = K.check(src["path"], lambda v: isinstance(v, str) and v.strip() != "", "a path, glob or Hub id", f"{prefix}.path", errors)
    for key in ("name", "split", "data_dir", "revision"):
        ok &= K.check(src[key], lambda v: v is None or isinstance(v, str), "a string or null", f"{prefix}.{key}", errors)
    ok &= K.check(src["data_files"], lambda v: v is None or isinstance(v, (str, list, dict)),
                  "a path, a list of paths or a mapping of split → paths", f"{prefix}.data_files", errors)
    ok &= K.check(src["streaming"], lambda v: v is None or isinstance(v, bool), "true, false or null",
                  f"{prefix}.streaming", errors)
    ok &= K.check(src["load_kwargs"], lambda v: isinstance(v, Mapping), "a mapping", f"{prefix}.load_kwargs", errors)
    if not ok:
        return None
    src["load_kwargs"] = dict(src["load_kwargs"])
    try:
        resolve_source(**src)
    except ConfigError as e:
        errors.add(f"{prefix}.path", str(e))
        return None
    return src


def _check_tools_file(path: Any, where: str, errors: K.Errors) -> None:
    if path is None:
        return
    if not K.check(path, lambda v: isinstance(v, str), "a JSON file path", where, errors):
        return
    try:
        read_tools_file(path)
    except ConfigError as e:
        errors.add(where, str(e))


def _check_dataset(i: int, raw: Any, top: dict[str, Any], errors: K.Errors) -> DatasetEntry | None:
    prefix = f"datasets[{i}]"
    if isinstance(raw, str):
        raw = {"path": raw}
    if not isinstance(raw, Mapping):
        errors.add(prefix, f"expected a mapping with a `path` (or a path string), got {type(raw).__name__}")
        return None
    K.check_keys(raw, K.DATASET_KEYS, prefix, errors, K.DATASET_HINTS)
    source = _check_source(raw, prefix, errors)
    label = raw.get("label")
    if label is not None and not (isinstance(label, str) and _LABEL.match(label)):
        errors.add(f"{prefix}.label", f"expected letters, digits, '_', '.' or '-', got {label!r}")
        label = None
    weight, num_rows = raw.get("weight"), raw.get("num_rows")
    if weight is not None:
        K.check(weight, lambda v: K.is_number(v) and v > 0, "a number > 0", f"{prefix}.weight", errors)
    if num_rows is not None:
        K.check(num_rows, lambda v: K.is_int(v) and v >= 1, "an integer >= 1", f"{prefix}.num_rows", errors)
    if weight is not None and num_rows is not None:
        errors.add(prefix, "give weight or num_rows, not both")
    _check_tools_file(raw.get("tools_file"), f"{prefix}.tools_file", errors)
    own = _check_encode(raw, prefix, errors)
    merged = {**top, **own}
    if "template_kwargs" in own and "template_kwargs" in top:
        merged["template_kwargs"] = {**top["template_kwargs"], **own["template_kwargs"]}
    try:
        options = EncodeOptions(**merged)
    except ConfigError as e:
        errors.add(prefix, str(e))
        return None
    if source is None:
        return None
    return DatasetEntry(label or "", source, options, raw.get("tools_file"),
                        float(weight) if K.is_number(weight) else None, num_rows if K.is_int(num_rows) else None)


def _check_pack(value: Any, max_length: int | None, truncation: str, errors: K.Errors) -> PackSpec | None:
    from ..packing import STRATEGIES, TRUNCATION

    if value is None or value is False:
        return None
    spec: dict[str, Any] = {"truncation": "turns" if truncation == "turns" else "drop"}
    if value is True:
        spec["max_length"] = max_length
    elif K.is_int(value):
        spec["max_length"] = value
    elif isinstance(value, Mapping):
        K.check_keys(value, K.PACK_KEYS, "pack", errors)
        spec.update({k: value[k] for k in K.PACK_KEYS if k in value})
        spec.setdefault("max_length", max_length)
    else:
        errors.add("pack", f"expected a packed row length, true, false or a mapping, got {value!r}")
        return None
    ok = K.check(spec["max_length"], lambda v: K.is_int(v) and v >= 1,
                 "a positive packed row length (pack: L, or pack: true with max_length)", "pack.max_length", errors)
    ok &= K.check(spec.get("strategy", "mbs"), lambda v: v in STRATEGIES, " or ".join(STRATEGIES), "pack.strategy", errors)
    ok &= K.check(spec["truncation"], lambda v: v in TRUNCATION, ", ".join(TRUNCATION), "pack.truncation", errors)
    ok &= K.check(spec.get("shuffle", True), lambda v: isinstance(v, bool), "true or false", "pack.shuffle", errors)
    return PackSpec(**spec) if ok else None


def _build(data: dict, where: str, trainer: TrainStage | None) -> PipelineConfig:
    errors = K.Errors()
    train_hint = {k: h for k in data if k not in K.TOP_KEYS and trainer and (h := trainer.key_hint(str(k)))}
    K.check_keys(data, K.TOP_KEYS, "", errors, {**K.DATA_KEY_HINTS, **K.TOP_HINTS}, also=train_hint)
    K.check(data.get("output_dir"), lambda v: isinstance(v, str) and v.strip() != "",
            "a directory (required: the stages write under it)", "output_dir", errors)
    for key in ("tokenizer", "chat_template"):
        K.check(data.get(key), lambda v: v is None or isinstance(v, str), "a string or null", key, errors)
    if isinstance(data.get("chat_template"), str):
        from ..masking.tokenizer import read_chat_template

        try:
            read_chat_template(data["chat_template"])
        except ConfigError as e:
            errors.add("chat_template", f"{e} (give a jinja file or the template text; template names such as "
                       "chatml are not accepted)")
    K.check(data.get("seed", 0), K.is_int, "an integer", "seed", errors)
    K.check(data.get("on_error", "skip"), lambda v: v in ("skip", "raise"), "skip or raise", "on_error", errors)
    K.check(data.get("num_proc", 1), lambda v: K.is_int(v) and v >= 1, "an integer >= 1", "num_proc", errors)
    top_encode = _check_encode(data, "", errors)
    try:
        defaults = options_dict(EncodeOptions(**top_encode))
    except ConfigError as e:
        errors.add("(top level)", str(e))
        defaults = options_dict(EncodeOptions())
    top = {"output_dir": data.get("output_dir"), "seed": data.get("seed", 0), "tokenizer": data.get("tokenizer")}
    train = data.get("train")
    if top["tokenizer"] is None and isinstance(train, Mapping):
        model = next((train[k] for k in ("model", "model_name_or_path", "base_model") if train.get(k)), None)
        top["tokenizer"] = train.get("tokenizer") or train.get("tokenizer_name") or (
            model if model not in (None, "", "embedded") else None)
    raw_datasets = data.get("datasets")
    entries: list[DatasetEntry] = []
    if K.check(raw_datasets, lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list of datasets",
               "datasets", errors):
        for i, raw in enumerate(raw_datasets):
            entry = _check_dataset(i, raw, top_encode, errors)
            if entry is not None:
                entries.append(entry)
    _assign_labels(entries, errors)
    pack = _check_pack(data.get("pack"), defaults["max_length"], defaults["truncation"], errors)
    train_cfg = None
    if train is not None and trainer is None:
        errors.add("train", "training runs in sftdata_train: use `sftdata run FILE` or "
                            "sftdata_train.pipeline.load_config/run_pipeline")
    elif train is not None:
        train_cfg = trainer.check(train, top, errors)
    errors.raise_if_any(where)
    return PipelineConfig(
        output_dir=data["output_dir"], datasets=entries, defaults=defaults, tokenizer=top["tokenizer"],
        chat_template=data.get("chat_template"), seed=data.get("seed", 0), on_error=data.get("on_error", "skip"),
        num_proc=data.get("num_proc", 1), pack=pack, train=train_cfg, trainer=trainer,
    )


def _assign_labels(entries: list[DatasetEntry], errors: K.Errors) -> None:
    given = [e.label for e in entries if e.label]
    for label in {x for x in given if given.count(x) > 1}:
        errors.add("datasets", f"label {label!r} is used twice: labels name the prepared/<label> dirs")
    taken = set(given)
    for e in entries:
        if e.label:
            continue
        base = _label_for(e.source["path"])
        label, n = base, 2
        while label in taken:
            label, n = f"{base}-{n}", n + 1
        e.label = label
        taken.add(label)
