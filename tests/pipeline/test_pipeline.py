"""The pipeline config: end to end offline, stage skipping, resolved-config round trip, validation errors."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftdata.cli import main as sftdata_main
from sftdata.errors import ConfigError
from sftdata.pipeline import CONFIG_FILE, STAGE_FILE, read_stage
from sftdata_train.pipeline import load_config, run_pipeline

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "pipeline.yaml"
# the example as shipped, made smaller so that 10 CPU steps take seconds
FAST = ["pack=256", "train.max_tokens_per_batch=256", "train.progress_bar=false"]


def _example(tmp_path: Path, *extra: str) -> list[str]:
    return [f"output_dir={tmp_path / 'out'}", *FAST, *extra]


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(ROOT)  # the example's dataset paths are relative to the repository root


def test_example_pipeline_end_to_end(tmp_path):
    """examples/pipeline.yaml offline: two datasets in two formats with a weight and a num_rows →
    prepare → mix → pack → train 10 steps; then a second run skips every stage."""
    result = run_pipeline(EXAMPLE, overrides=_example(tmp_path), log=lambda s: None)
    cfg = result.config
    assert [(s.stage, s.status) for s in result.stages] == [
        ("prepare:traces", "ran"), ("prepare:sharegpt", "ran"), ("mix", "ran"), ("pack", "ran"), ("train", "ran")]

    # per-dataset options reached prepare
    traces = json.loads((cfg.prepared_dir(cfg.datasets[0]) / "stats.json").read_text())
    sharegpt = json.loads((cfg.prepared_dir(cfg.datasets[1]) / "stats.json").read_text())
    assert traces["options"]["turn_policy"] == "exact" and sharegpt["options"]["turn_policy"] == "last"
    assert sharegpt["options"]["format"] == "sharegpt" and sharegpt["rows_in"] == sharegpt["rows_out"] == 6
    assert traces["rows_in"] == 6 and traces["rows_rejected"] == 1  # the deliberately misspelt role
    # the tools_file reached the rows: the template renders the tool schemas into the prompt
    from sftdata.masking.tokenizer import load_tokenizer

    tok = load_tokenizer(None)
    text = tok.decode(datasets.load_from_disk(str(cfg.prepared_dir(cfg.datasets[1])))[0]["input_ids"])
    assert "convert_currency" in text and "get_weather" in text

    # mix: weight 2.0 → every traces conversation twice; num_rows 4 → 4 sharegpt conversations
    mix = json.loads((cfg.mixed_dir / "mix_stats.json").read_text())
    by = {p["label"]: p for p in mix["datasets"]}
    assert by["traces"]["conversations_taken"] == 2 * by["traces"]["conversations_available"] == 10
    assert by["sharegpt"]["conversations_taken"] == 4 and by["sharegpt"]["source_index_offset"] == 6
    mixed = datasets.load_from_disk(str(cfg.mixed_dir))
    src = mixed["source_index"]
    assert sorted(s for s in src if s >= 6) == sorted(set(s for s in src if s >= 6))  # 4 distinct, one row each
    assert len([s for s in src if s >= 6]) == 4
    assert all(src.count(s) == 2 for s in set(s for s in src if s < 6))

    packed = datasets.load_from_disk(str(cfg.packed_dir))
    assert max(packed["length"]) <= 256
    records = [json.loads(line) for line in (cfg.train_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 11))
    assert (cfg.train_dir / "final" / "config.json").is_file()
    train_cfg = yaml.safe_load((cfg.train_dir / "config.yaml").read_text())
    assert train_cfg["learning_rate"] == 1e-3 and train_cfg["precision"] == "fp32" and train_cfg["data"] == str(cfg.packed_dir)

    # every output has its resolved config and a completed stage record
    for stage in result.stages:
        assert (stage.output / CONFIG_FILE).is_file()
        rec = read_stage(stage.output)
        assert rec["completed"] and rec["fingerprint"] == stage.fingerprint

    again = run_pipeline(EXAMPLE, overrides=_example(tmp_path), log=lambda s: None)
    assert [s.status for s in again.stages] == ["skipped"] * 5

    # a changed mixing weight re-runs the mix and what follows, not the prepares
    third = run_pipeline(EXAMPLE, overrides=_example(tmp_path, "datasets.1.num_rows=3"), until="pack",
                         log=lambda s: None)
    assert [s.status for s in third.stages] == ["skipped", "skipped", "ran", "ran"]
    # ... and the train stage refuses to overwrite the run of the other data without --force
    with pytest.raises(ConfigError, match="another config"):
        run_pipeline(EXAMPLE, overrides=_example(tmp_path, "datasets.1.num_rows=3"), log=lambda s: None)


def test_resolved_config_round_trip(tmp_path):
    cfg = load_config(EXAMPLE, [f"output_dir={tmp_path}"])
    cfg.to_yaml(tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == cfg and again.to_dict() == cfg.to_dict()
    d = cfg.to_dict()
    assert d["train"]["learning_rate"] == 1e-3 and d["train"]["lr_scheduler_type"] == "cosine"
    assert d["train"]["gradient_accumulation_steps"] == 1
    assert d["datasets"][1]["turn_policy"] == "last" and d["datasets"][0]["turn_policy"] == "exact"
    assert d["datasets"][0]["max_length"] == 1024 and d["pack"]["truncation"] == "turns"
    assert "data" not in d["train"] and d["train"]["output_dir"] == str(tmp_path / "train")


_ENCODE = st.fixed_dictionaries({}, optional={
    "turn_policy": st.sampled_from(["exact", "all", "last"]),
    "train_roles": st.sampled_from([["assistant"], "assistant,tool", ["assistant", "user"]]),
    "train_reasoning": st.booleans(),
    "trim_trailing": st.booleans(),
    "max_length": st.none() | st.integers(1, 4096),
    "truncation": st.sampled_from(["drop", "turns"]),
    "template_kwargs": st.dictionaries(st.sampled_from(["enable_thinking", "x"]), st.booleans(), max_size=2),
    "format": st.none() | st.sampled_from(["openai", "sharegpt"]),
})
_DATASET = st.tuples(
    st.sampled_from(["examples/traces.jsonl", "examples/sharegpt.jsonl", "examples/*.jsonl"]),
    _ENCODE,
    st.sampled_from([{}, {"weight": 0.5}, {"weight": 3}, {"num_rows": 7}]),
    st.sampled_from([{}, {"label": "a"}, {"tools_file": "examples/tools.json"}]),
).map(lambda t: {"path": t[0], **t[1], **t[2], **t[3]})
_TRAIN = st.fixed_dictionaries({}, optional={
    "learning_rate": st.floats(1e-6, 1e-2), "num_train_epochs": st.sampled_from([1, 2.5]),
    "gradient_accumulation_steps": st.integers(1, 8), "bf16": st.booleans(),
    "lr_scheduler_type": st.sampled_from(["cosine", "linear", "constant_with_warmup"]),
    "warmup_steps": st.sampled_from([0, 10, 0.1]), "report_to": st.sampled_from(["none", ["tensorboard"]]),
    "model": st.sampled_from(["embedded", None]),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(top=_ENCODE, items=st.lists(_DATASET, min_size=1, max_size=3), train=st.none() | _TRAIN,
       pack=st.sampled_from([None, 512, {"max_length": 64, "strategy": "bfd"}, False]), seed=st.integers(0, 5))
def test_resolved_config_round_trip_property(tmp_path, top, items, train, pack, seed):
    labels = [d.get("label") for d in items]
    if len([x for x in labels if x]) > 1:
        items = [{k: v for k, v in d.items() if k != "label"} for d in items]
    raw = {"output_dir": str(tmp_path / "o"), "datasets": items, "seed": seed, **top}
    if pack is not None:
        raw["pack"] = pack
    if train is not None:
        raw["train"] = train
    cfg = load_config(raw)
    again = load_config(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg
    assert len({d.label for d in cfg.datasets}) == len(cfg.datasets)


def test_validation_lists_every_bad_key_with_its_path(tmp_path):
    bad = {
        "output_dir": str(tmp_path / "never"),
        "sequence_len": 2048,
        "learning_rate": 1e-5,
        "turn_polcy": "last",
        "pack": {"max_length": 128, "strategy": "best"},
        "datasets": [
            {"path": "examples/no_such_file.jsonl"},
            {"path": "examples/traces.jsonl", "fromat": "openai", "weight": 1, "num_rows": 3},
            {"path": "examples/traces.jsonl", "format": "sharegtp", "turn_policy": "first", "type": "sharegpt"},
        ],
        "train": {"learnig_rate": 1e-5, "per_device_train_batch_size": 4, "lr_scheduler_type": "polynomial",
                  "data": "x", "adapter": "lora"},
    }
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    msg = str(info.value)
    for expected in [
        "sequence_len: use `max_length`",
        "learning_rate: a training option: put it under `train:`",
        "turn_polcy: unknown key; did you mean 'turn_policy'?",
        "pack.strategy: expected mbs or bfd",
        "datasets[0].path: input not found: examples/no_such_file.jsonl",
        "datasets[1].fromat: unknown key; did you mean 'format'?",
        "datasets[1]: give weight or num_rows, not both",
        "datasets[2].format: unknown format 'sharegtp'; did you mean 'sharegpt'?",
        "datasets[2].turn_policy: expected exact, all or last",
        "datasets[2].type: use `format`",
        "train.learnig_rate: unknown key; did you mean 'learning_rate'?",
        "train.per_device_train_batch_size: sftdata_train batches by tokens",
        "train.lr_scheduler_type: 'polynomial' has no equivalent",
        "train.data: set by the pipeline",
        "train.adapter: turns LoRA on: set lora_r",
    ]:
        assert expected in msg, (expected, msg)
    assert msg.count("\n  ") == 15
    assert not (tmp_path / "never").exists()  # validated before any work


def test_run_cli_and_config_on_subcommands(tmp_path, capsys):
    sets = [x for s in _example(tmp_path) for x in ("--set", s)]
    assert sftdata_main(["run", str(EXAMPLE), "--dry-run", *sets]) == 0
    assert not (tmp_path / "out").exists()
    err = capsys.readouterr().err
    assert "prepare:traces: would run" in err and "train: would run" in err
    assert sftdata_main(["prepare", "--config", str(EXAMPLE), "--no-progress", *sets]) == 0
    assert read_stage(tmp_path / "out" / "mixed")["completed"] and not (tmp_path / "out" / "packed").exists()
    assert sftdata_main(["pack", "--config", str(EXAMPLE), *sets]) == 0
    err = capsys.readouterr().err
    assert "prepare:traces: skipped" in err and "pack: ran" in err
    assert not (tmp_path / "out" / "train").exists()
    assert sftdata_main(["show", "--config", str(EXAMPLE), "--no-color", *sets]) == 0
    assert sftdata_main(["pack", "--config", str(EXAMPLE), "--max-length", "9", *sets]) == 2
    assert "--max-length cannot be combined with --config" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("output_dir: x\ndatasets: [examples/traces.jsonl]\ntrain: {num_train_epoch: 2}\n")
    assert sftdata_main(["run", str(bad)]) == 2
    assert "train.num_train_epoch: unknown key; did you mean 'num_train_epochs'" in capsys.readouterr().err


def test_data_stage_refuses_a_dir_it_did_not_write(tmp_path):
    out = tmp_path / "out" / "prepared" / "traces"
    out.mkdir(parents=True)
    (out / "mine.txt").write_text("not sftdata's")
    raw = {"output_dir": str(tmp_path / "out"), "datasets": ["examples/traces.jsonl"]}
    with pytest.raises(ConfigError, match="not written by `sftdata run`"):
        run_pipeline(raw, log=lambda s: None)
    assert (out / "mine.txt").exists()
    res = run_pipeline(raw, force=True, log=lambda s: None)
    assert res.stage("prepare:traces").status == "ran" and not (out / "mine.txt").exists()
    assert (out / STAGE_FILE).is_file()


def test_train_yaml_accepts_a_pipeline_config(tmp_path):
    from sftdata_train.config.command_line import parse_args

    cfg = parse_args(["--config", str(EXAMPLE), "--output-dir", str(tmp_path / "run")])
    assert cfg.data == "out/pipeline/packed" and cfg.learning_rate == 1e-3 and cfg.max_steps == 10
    assert cfg.output_dir == str(tmp_path / "run")


def test_fingerprints_follow_content_not_paths_or_workers(tmp_path):
    data = tmp_path / "traces.jsonl"
    data.write_bytes((ROOT / "examples" / "traces.jsonl").read_bytes())
    raw = {"output_dir": str(tmp_path / "out"), "datasets": [str(data)]}

    def statuses(*overrides, **kw):
        res = run_pipeline(raw, overrides=list(overrides), log=lambda s: None, **kw)
        return [s.status for s in res.stages]

    assert statuses() == ["ran"]
    assert statuses("num_proc=2") == ["skipped"]  # the output does not depend on the workers
    data.write_bytes(data.read_bytes() + b'{"messages": [{"role": "user", "content": "hi"}, '
                                          b'{"role": "assistant", "content": "hello"}]}\n')
    assert statuses() == ["ran"]  # the input's content changed
    template = tmp_path / "t.jinja"
    template.write_text((ROOT / "sftdata" / "assets" / "default" / "chat_template.jinja").read_text() + "\n")
    assert statuses(f"chat_template={template}") == ["ran"]  # another template
    assert statuses(f"chat_template={template}") == ["skipped"]
    assert statuses("datasets.0.turn_policy=last", dry_run=True) == ["would run"]  # `- path` shorthand indexed
