"""Experiment trackers: the metrics.jsonl records and the resolved config reach TensorBoard, W&B
(offline) and trackio (local), read back with each library's own reader."""

from __future__ import annotations

import glob
import importlib.util
import json
import math
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftdata.errors import ConfigError
from sftdata_train.config.train_config import TrainConfig
from sftdata_train.loop.trainer import train
from sftdata_train.testing import prepare_dir, synthetic_conversations
from sftdata_train.loop.tracking import metric_items


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracking")
    prepare_dir(synthetic_conversations(24, seed=5), root / "prepared")
    return root / "prepared"


def _cfg(data_dir, out, **kw):
    return dict(data=str(data_dir), output_dir=str(out), precision="fp32", lr=1e-3, max_steps=4,
                max_tokens_per_batch=400, eval_fraction=0.2, eval_steps=2, progress_bar=False, **kw)


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _expected(records):
    """{tag: {step: value}} as the trackers must have it."""
    out: dict[str, dict[int, float]] = {}
    for r in records:
        for tag, value in metric_items(r).items():
            out.setdefault(tag, {})[r["step"]] = value
    return out


def test_tensorboard_events_load_with_tensorboards_reader(data_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train(_cfg(data_dir, out, report_to="tensorboard"))
    ea = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    expected = _expected(_records(out))
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/trained_tokens_per_s",
            "train/peak_memory_gb", "eval/loss"} <= set(expected)
    assert "train/mfu" not in expected  # null on a CPU without --peak-tflops: not logged
    assert set(ea.Tags()["scalars"]) == set(expected)
    for tag, by_step in expected.items():
        got = {e.step: e.value for e in ea.Scalars(tag)}
        assert got.keys() == by_step.keys(), tag
        for step, value in by_step.items():
            assert got[step] == pytest.approx(value, rel=1e-6), (tag, step)  # stored as float32
    assert sorted(expected["eval/loss"]) == [2, 4] and sorted(expected["train/loss"]) == [1, 2, 3, 4]
    config_text = ea.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "learning_rate: 0.001" in config_text and "report_to: tensorboard" in config_text


def test_legacy_tensorboard_flag_is_report_to(tmp_path):
    cfg = TrainConfig.from_dict({"data": "d", "output_dir": "o", "tensorboard": True, "report_to": "wandb"})
    if importlib.util.find_spec("wandb") is not None:
        assert cfg.validate().trackers() == ["wandb", "tensorboard"]


def test_a_missing_tracker_package_is_an_error_naming_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"report_to wandb needs the `wandb` package, which is not installed: pip install wandb"):
        TrainConfig.from_dict({"data": "d", "output_dir": "o", "report_to": "tensorboard,wandb"}).validate()
    from sftdata_train.pipeline import load_config

    with pytest.raises(ConfigError, match=r"train: report_to wandb needs the `wandb` package"):
        load_config({"output_dir": "o", "datasets": ["examples/traces.jsonl"], "train": {"report_to": ["wandb"]}})


def _wandb_records(path: str) -> list:
    """Records of a W&B ``.wandb`` file: LevelDB-log framing (32 KiB blocks, 7-byte headers) of
    ``wandb_internal_pb2.Record`` protobufs, parsed with wandb's own protobuf classes."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    pos, block, records, pending = 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # FULL
            records.append(chunk)
        elif kind == 2:  # FIRST
            pending = chunk
        elif kind == 3:  # MIDDLE
            pending += chunk
        elif kind == 4:  # LAST
            records.append(pending + chunk)
    out = []
    for raw in records:
        rec = pb.Record()
        rec.ParseFromString(raw)
        out.append(rec)
    return out


def test_wandb_offline_run_holds_the_metrics_and_config(data_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    train(_cfg(data_dir, out, report_to="wandb", project="sftdata-tests", run_name="tiny"))
    import wandb

    wandb.teardown()  # finish() returns before wandb's service has closed (flushed) the run file
    files = glob.glob(str(out / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(files) == 1
    records = _wandb_records(files[0])
    assert records[-1].WhichOneof("record_type") == "exit"  # the whole run is in the file
    history: dict[str, dict[int, float]] = {}
    for rec in records:
        if rec.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
            for k, v in items.items():
                if not k.startswith("_"):
                    history.setdefault(k, {})[int(items["_step"])] = v
    expected = _expected(_records(out))
    assert history.keys() == expected.keys()
    for tag, by_step in expected.items():
        assert history[tag] == pytest.approx(by_step, rel=1e-9), tag
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.project == "sftdata-tests" and run.display_name == "tiny"
    config = {i.key: json.loads(i.value_json) for i in run.config.update}
    assert config["learning_rate"] == 0.001 and config["report_to"] == "wandb" and config["max_steps"] == 4
    assert (out / "wandb_run_id").read_text().strip() == run.run_id


def test_trackio_local_run_holds_the_metrics_and_config(data_dir, tmp_path):
    if importlib.util.find_spec("trackio") is None:
        pytest.skip("trackio not installed")
    import trackio.utils
    from trackio.sqlite_storage import SQLiteStorage

    assert str(trackio.utils.TRACKIO_DIR) == os.environ["TRACKIO_DIR"]  # tests/conftest.py: a temporary dir
    out = tmp_path / "run"
    project = f"sftdata-tests-{tmp_path.name}"
    train(_cfg(data_dir, out, report_to="trackio", project=project, run_name="tiny"))
    logged: dict[str, dict[int, float]] = {}
    for row in SQLiteStorage.get_logs(project, "tiny"):
        for k, v in row.items():
            if "/" in k:
                logged.setdefault(k, {})[int(row["step"])] = v
    expected = _expected(_records(out))
    assert logged.keys() == expected.keys()
    for tag, by_step in expected.items():
        assert logged[tag] == pytest.approx(by_step, rel=1e-9), tag
    config = SQLiteStorage.get_run_config(project, "tiny")
    assert config["learning_rate"] == 0.001 and config["report_to"] == "trackio"


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["step", "loss", "eval_loss", "mfu", "lr", "flag", "name", "tokens"]),
                       st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=3)))
def test_metric_items_keeps_finite_numbers_only(record):
    items = metric_items(record)
    for key, value in record.items():
        tag = f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}"
        keep = (key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
        assert (tag in items) == keep
        if keep:
            assert items[tag] == value
    assert len(items) == sum(1 for k in record if f"train/{k}" in items or f"eval/{k[5:]}" in items)
