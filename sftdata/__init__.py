"""sftdata: agent traces to supervised fine-tuning data with exact assistant masks."""

from .errors import ConfigError, Reason, RowError, SftDataError
from .schema import Conversation, Message, Role, TextExample, ToolCall
from .encoder import Encoder
from .options import EncodeConfig, EncodeOptions, ReadConfig, RenderConfig
from .prepare_config import PrepareConfig
from .output.merge import merge
from .prepare import encode_fn, prepare
from .masking.render import TurnPolicy

__version__ = "0.1.0"

_LAZY = {"PaddingCollator": "collate", "PaddingFreeCollator": "collate"}  # import torch only when used


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'sftdata' has no attribute {name!r}")

__all__ = [
    "ConfigError",
    "Conversation",
    "EncodeConfig",
    "EncodeOptions",
    "PrepareConfig",
    "ReadConfig",
    "RenderConfig",
    "Encoder",
    "TurnPolicy",
    "encode_fn",
    "merge",
    "prepare",
    "Message",
    "PaddingCollator",
    "PaddingFreeCollator",
    "Reason",
    "Role",
    "RowError",
    "SftDataError",
    "TextExample",
    "ToolCall",
]

# Old flat module paths (sftdata.render -> sftdata.masking.render ...): the same module object, with a
# DeprecationWarning; the table is in docs/architecture.md.
from . import _moved  # noqa: E402

__getattr__ = _moved.install(__name__, globals().get("__getattr__"))
