"""What differs between the API families, as data and small pure functions."""

from __future__ import annotations

from llm_api_router.config import Family
from llm_api_router.families.anthropic import AnthropicFamily
from llm_api_router.families.base import ApiFamily, ChatRequest, StreamTracker, UpstreamErrorInfo
from llm_api_router.families.openai import OpenAIFamily
from llm_api_router.families.operations import Fallback, LimitClass, Operation, StreamFormat

__all__ = [
    "AnthropicFamily",
    "ApiFamily",
    "ChatRequest",
    "Fallback",
    "LimitClass",
    "OpenAIFamily",
    "Operation",
    "StreamFormat",
    "StreamTracker",
    "UpstreamErrorInfo",
    "family_for",
]


def family_for(name: Family) -> ApiFamily:
    """A (stateless) adapter for the named family."""
    return OpenAIFamily() if name == "openai" else AnthropicFamily()
