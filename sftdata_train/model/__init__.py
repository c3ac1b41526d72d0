"""Model and attention: the model a run trains and how its attention sees padding-free and tree rows.

* :mod:`~sftdata_train.model.loading`: the model and tokenizer (a dir, a Hub id, or the embedded tiny
  default), the meta-device skeleton, parameter counts;
* :mod:`~sftdata_train.model.attention`: padding-free causal attention and its backends (``BACKENDS``,
  ``set_backend``), with :mod:`~sftdata_train.model.seq_layout` (offsets and masks of a packed row) and
  :mod:`~sftdata_train.model.torch_varlen` (PyTorch's ``varlen_attn`` across releases);
* :mod:`~sftdata_train.model.tree_attention`: attention for prefix-tree rows;
* :mod:`~sftdata_train.model.compiling` (``torch.compile`` per decoder layer) and
  :mod:`~sftdata_train.model.recompute` (activation checkpointing from a memory estimate).

``sftdata_train.model`` was one module: its names (``from sftdata_train.model import load_model`` ...)
are read from :mod:`sftdata_train.model.loading` on first use, without a warning (docs/architecture.md).
"""

from __future__ import annotations

from sftdata.module_aliases import reexport

__getattr__ = reexport(__name__, "loading")

__all__ = [
    "DEFAULT_MODEL_SIZE", "attn_for", "build_skeleton", "count_matmul_params", "default_model_config", "load_model",
    "load_tokenizer", "model_config", "params_on_meta",
]
