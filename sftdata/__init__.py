"""sftdata: agent traces to supervised fine-tuning data with exact assistant masks."""

from .errors import ConfigError, Reason, RowError, SftDataError
from .schema import Conversation, Message, Role, TextExample, ToolCall
from .encoder import EncodeOptions, Encoder
from .merge import merge
from .prepare import encode_fn, prepare
from .render import TurnPolicy

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Conversation",
    "EncodeOptions",
    "Encoder",
    "TurnPolicy",
    "encode_fn",
    "merge",
    "prepare",
    "Message",
    "Reason",
    "Role",
    "RowError",
    "SftDataError",
    "TextExample",
    "ToolCall",
]
