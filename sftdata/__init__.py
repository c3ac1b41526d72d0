"""sftdata: agent traces to supervised fine-tuning data with exact assistant masks."""

from .errors import ConfigError, Reason, RowError, SftDataError
from .schema import Conversation, Message, Role, TextExample, ToolCall

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Conversation",
    "Message",
    "Reason",
    "Role",
    "RowError",
    "SftDataError",
    "TextExample",
    "ToolCall",
]
