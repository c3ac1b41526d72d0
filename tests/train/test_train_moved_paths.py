"""The trainer's flat module paths from before the folders (``sftdata_train.attention`` ...) keep working:
the same module object as the new path (so patching through either patches both), with a
DeprecationWarning naming the new path. The five old modules that are package names now
(``sftdata_train.config``, ``.model``, ``.lora``, ``.checkpoint``, ``.loop``) still expose every name
they exposed, the same objects, without a warning. Mirrors tests/test_moved_paths.py (the sftdata side)."""

from __future__ import annotations

import json

from sftdata_train._moved import MOVED, PACKAGES

#: The public names of each old module, listed before the move (``vars(module)``, modules left out).
OLD_NAMES = {
    "config": ["ATTN_IMPLEMENTATIONS", "Any", "BNB_4BIT_QUANT_TYPES", "ConfigError", "DEVICES", "Mapping",
               "NONFINITE_GRAD", "PRECISIONS", "SAVE_DTYPES", "SCHEDULERS", "SWITCHES", "TrainConfig", "USE_PEFT_RANK",
               "as_config", "dataclass", "field", "file_keys", "raise_errors",
               "EXAMPLE", "build_arg_parser", "parse_args"],  # these three: the old module's __getattr__
    "model": ["Any", "ConfigError", "DEFAULT_MODEL_SIZE", "attn_for", "build_skeleton", "count_matmul_params",
              "default_model_config", "load_model", "load_tokenizer", "model_config", "params_on_meta"],
    "lora": ["ADAPTER_KEYS", "ADAPTER_NAME", "Adapter", "Any", "ConfigError", "DEFAULTS", "OFF_DEFAULTS", "PEFT_PIP",
             "Path", "alpha", "apply", "check_qlora", "check_resume", "check_runtime", "config_kwargs", "dataclass",
             "describe", "enabled", "flops_params", "load_quantized", "names", "peft_model", "quiet_peft",
             "resolve_precision", "target_modules", "validate_config"],
    "checkpoint": ["Any", "Callable", "ConfigError", "DCP_DIR", "DistInfo", "MANIFEST", "Path", "STATE_DIR", "barrier",
                   "broadcast_object", "checkpoint_damage", "checkpoint_name", "latest_checkpoint", "list_checkpoints",
                   "load_training_state", "replace_dir", "resolve_resume", "verify_checkpoint", "write_dir_atomic",
                   "write_manifest",
                   "export_model", "tied_names"],  # these two: the old module's __getattr__
    "loop": ["Any", "Interrupted", "MetricsLogger", "Path", "RunSetup", "StepOutput", "StopRequest", "Throughput",
             "TrainConfig", "TrainResult", "Trainer", "all_reduce_sum", "as_config", "batch_to_device",
             "collate_indices", "dataclass", "export_model", "field", "open_trackers", "optimizer_step",
             "peak_memory_gb", "stop_requests", "train"],
}

def test_every_old_path_is_the_new_module_with_a_warning(assert_moved_paths):
    assert_moved_paths("sftdata_train._moved", MOVED)


def test_every_old_module_file_is_gone_and_every_new_one_is_there():
    from pathlib import Path

    import sftdata_train

    root = Path(sftdata_train.__file__).parent
    for old, new in {**MOVED, **PACKAGES}.items():
        assert not (root / (old.split(".", 1)[1] + ".py")).exists(), old  # else an editable install finds it
        assert (root / (new.split(".", 1)[1].replace(".", "/") + ".py")).is_file(), new


def test_old_forms_of_import_and_patching_reach_the_moved_module(python_probe):
    code = r"""
import json, warnings
warnings.simplefilter("ignore", DeprecationWarning)
import sftdata_train
from sftdata_train import attention as a1
from sftdata_train.tree_attention import dense_tree_mask
import sftdata_train.model.attention as a2, sftdata_train.model.tree_attention as t2
import sftdata_train.step
from unittest import mock
import sftdata_train.loop.step as s2
with mock.patch("sftdata_train.step.step_counts", "patched"):
    patched = s2.step_counts
import sftdata_train.config_cli
from sftdata_train.config.command_line import parse_args
print(json.dumps({"attention": a1 is a2 and sftdata_train.attention is a2,
                  "tree": dense_tree_mask is t2.dense_tree_mask, "patched": patched == "patched",
                  "attribute": sftdata_train.config_cli.parse_args is parse_args,
                  "train": callable(sftdata_train.train) and sftdata_train.TrainConfig.__name__ == "TrainConfig"}))
"""
    assert python_probe(code) == {"attention": True, "tree": True, "patched": True, "attribute": True, "train": True}


def test_an_old_module_that_is_a_package_now_exposes_its_names_without_a_warning(python_probe):
    code = r"""
import importlib, json, sys, warnings
old_names = json.loads(sys.argv[1])
packages = json.loads(sys.argv[2])
report = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for short, names in old_names.items():
        package = importlib.import_module("sftdata_train." + short)
        module = importlib.import_module(packages["sftdata_train." + short])
        public = sorted(k for k, v in vars(module).items() if not k.startswith("_")
                        and not isinstance(v, type(sys)))
        report[short] = {
            "missing": [n for n in names if not hasattr(package, n)],
            "other_object": [n for n in set(names) | set(public)
                             if hasattr(package, n) and getattr(package, n) is not getattr(module, n)],
            "all_resolves": all(hasattr(package, n) for n in getattr(package, "__all__", [])),
            "has_all": bool(getattr(package, "__all__", None)),
        }
    from sftdata_train.config import TrainConfig, parse_args
    from sftdata_train.loop import train
    from sftdata_train.checkpoint import export_model, latest_checkpoint
print(json.dumps({"packages": report, "warnings": [str(w.message) for w in caught
                                                   if "Moved module" in str(w.message)]}))
"""
    report = python_probe(code, json.dumps(OLD_NAMES), json.dumps(PACKAGES))
    assert report["warnings"] == []
    assert set(report["packages"]) == {p.split(".")[1] for p in PACKAGES} == set(OLD_NAMES)
    for short, r in report["packages"].items():
        assert r == {"missing": [], "other_object": [], "all_resolves": True, "has_all": True}, (short, r)


def test_the_new_paths_warn_nothing_and_the_package_stays_cheap(python_probe):
    code = r"""
import importlib, json, sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import sftdata_train
    cheap = "torch" not in sys.modules
    from sftdata_train._moved import MOVED, PACKAGES
    for new in [*MOVED.values(), *PACKAGES.values(), *PACKAGES]:
        importlib.import_module(new)
    from sftdata_train import train, Trainer, TrainConfig
print(json.dumps({"cheap": cheap, "warnings": [str(w.message) for w in caught if "Moved module" in str(w.message)]}))
"""
    assert python_probe(code) == {"cheap": True, "warnings": []}


def test_an_unknown_name_is_still_an_attribute_error():
    import pytest

    import sftdata_train
    import sftdata_train.lora

    with pytest.raises(AttributeError, match="no_such_module"):
        sftdata_train.no_such_module  # noqa: B018
    with pytest.raises(AttributeError, match="no_such_name"):
        sftdata_train.lora.no_such_name  # noqa: B018
