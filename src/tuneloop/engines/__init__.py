"""Inference engines behind one interface: llama.cpp, transformers and OpenAI-compatible HTTP.

Heavy libraries (torch, transformers, llama_cpp) are imported only when an engine is built.
"""

from tuneloop.engines.base import Completion, Delta, Engine, GenerationParams, Message

__all__ = ["Completion", "Delta", "Engine", "GenerationParams", "Message"]
