"""The prepared data set the LoRA tests train on (one per test module)."""

import pytest

from sftdata_train.testing import prepare_dir, synthetic_conversations


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    prepare_dir(synthetic_conversations(40, seed=2), root / "prepared")
    return root / "prepared"
