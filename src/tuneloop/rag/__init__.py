"""Retrieval-augmented generation: chunking, embeddings, the hybrid index with permission
filters inside the query, prompt assembly with citations, and retrieval metrics.

    report = index_knowledge_base(project, actor)
    hits = search(project, actor, "how do I reset my password?", top_k=4)
    prompt = assemble(system_prompt, messages, hits, 768, count_tokens)  # .messages, .citations
"""

from tuneloop.rag.index import IndexReport, index_knowledge_base
from tuneloop.rag.metrics import mrr, recall_at_k
from tuneloop.rag.prompt import Assembly, assemble
from tuneloop.rag.retrieve import Hit, search

__all__ = ["Assembly", "Hit", "IndexReport", "assemble", "index_knowledge_base", "mrr",
           "recall_at_k", "search"]
