"""Inference engines behind one interface: llama.cpp, transformers and OpenAI-compatible HTTP.

Heavy libraries (torch, transformers, llama_cpp) are imported only when an engine is built.

    engine = load_engine(project, "base")
    engine.chat([{"role": "user", "content": "Hi"}], GenerationParams(max_tokens=32))
"""

from tuneloop.engines.base import Completion, Delta, Engine, GenerationParams, Message
from tuneloop.engines.loader import clear_engine_cache, load_engine

__all__ = ["Completion", "Delta", "Engine", "GenerationParams", "Message", "clear_engine_cache",
           "load_engine"]
