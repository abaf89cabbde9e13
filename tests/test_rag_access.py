"""Property: over random corpora, approvals and principals, retrieval returns only what the
principal may see, never starves, and a public principal never receives a Tier 2 chunk without
a deploy-public approval. Runs the real hybrid index (BM25, exact and IVF partitions) with the
governance decision; random unit vectors stand in for embeddings, which this rule does not
depend on."""

from __future__ import annotations

import datetime as dt

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneloop.governance.tiers import Actor, Grant
from tuneloop.governance.visibility import visible_sources
from tuneloop.rag.hybrid import HybridIndex

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
WORDS = ["refund", "sync", "inotify", "saml", "invoice", "acme", "plan", "limit", "proxy", "key"]
SOURCES = ["handbook", "faq", "tickets", "chats"]


@st.composite
def worlds(draw):
    tiers = {s: draw(st.sampled_from([1, 2])) for s in
             draw(st.lists(st.sampled_from(SOURCES), min_size=1, max_size=4, unique=True))}
    n = draw(st.integers(1, 60))
    chunk_sources = draw(st.lists(st.sampled_from(sorted(tiers)), min_size=n, max_size=n))
    pool = [" ".join(words) for words in draw(st.lists(
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=6), min_size=1, max_size=8))]
    texts = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
    audience = draw(st.sampled_from(["internal", "public"]))
    actor = Actor(id=7, name="someone", role=draw(st.sampled_from(["developer", "privacy",
                                                                    "admin"])), audience=audience)
    grants = []
    for i in range(draw(st.integers(0, 4))):
        grants.append(Grant(
            id=i + 1,
            status=draw(st.sampled_from(["granted", "granted", "pending", "revoked", "denied"])),
            scope=frozenset(f"source:{s}" for s in draw(st.lists(st.sampled_from(SOURCES),
                                                                 max_size=3))),
            uses=frozenset(draw(st.lists(st.sampled_from(["rag", "deploy-public", "train"]),
                                         min_size=1, max_size=3))),
            expires_at=NOW + dt.timedelta(days=draw(st.sampled_from([-1, 30]))),
            beneficiary=draw(st.sampled_from([actor.ref, f"audience:{audience}",
                                              "principal:other", "audience:internal"]))))
    query = " ".join(draw(st.lists(st.sampled_from([*WORDS, "unknown"]), min_size=1,
                                   max_size=4)))
    return {"tiers": tiers, "sources": chunk_sources, "texts": texts, "actor": actor,
            "grants": grants, "query": query, "top_k": draw(st.integers(1, 12)),
            "exact_max": draw(st.sampled_from([8, 10_000])), "seed": draw(st.integers(0, 99))}


def live_cover(grants, actor, source, use):
    return any(g.is_live(NOW) and use in g.uses and f"source:{source}" in g.scope
               and g.beneficiary in (actor.ref, f"audience:{actor.audience}") for g in grants)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_retrieval_returns_only_what_the_principal_may_see(world):
    rng = np.random.default_rng(world["seed"])
    n = len(world["texts"])
    vectors = rng.standard_normal((n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    tiers = world["tiers"]
    index = HybridIndex.build(list(range(1, n + 1)), world["sources"],
                              [tiers[s] for s in world["sources"]], world["texts"], vectors,
                              exact_max=world["exact_max"], nprobe=10_000)
    actor, grants = world["actor"], world["grants"]
    visible = visible_sources(actor, index.source_tiers(), grants, NOW)
    query_vector = vectors[0] + 0.1 * rng.standard_normal(16).astype(np.float32)
    hits = index.search(world["query"], query_vector, visible, world["top_k"])

    for hit in hits:
        tier = tiers[hit.source]
        assert hit.source in visible
        if tier == 2:
            assert live_cover(grants, actor, hit.source, "rag")
            if actor.audience == "public":
                assert live_cover(grants, actor, hit.source, "deploy-public")
    if actor.audience == "public" and not any("deploy-public" in g.uses for g in grants):
        assert all(tiers[h.source] == 1 for h in hits)
    # Filtering happens inside the query: never fewer hits than the visible chunks allow.
    visible_rows = sum(1 for s in world["sources"] if s in visible)
    assert len(hits) == min(world["top_k"], visible_rows)
    assert len({h.row for h in hits}) == len(hits)
