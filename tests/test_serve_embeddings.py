"""`POST /v1/embeddings` through the `openai` SDK, with the bundled all-MiniLM-L6-v2."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.test_serve_support import CONFIG, live_server, make_keys, make_project
from tuneloop.rag.embed import get_embedder
from tuneloop.serve import requestlog
from tuneloop.serve.app import create_app

pytestmark = pytest.mark.slow  # loads the real embedding model


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    project = make_project(tmp_path_factory.mktemp("embed") / "proj",
                           CONFIG.replace("rate_limit_per_minute: 1000",
                                          "rate_limit_per_minute: 8"))
    keys = make_keys(project)
    with live_server(create_app(project)) as url:
        api = openai.OpenAI(base_url=url + "/v1", api_key=keys.internal, max_retries=0,
                            timeout=60)
        yield {"api": api, "url": url, "project": project, "keys": keys}
    project.close()


def cosine(a: list[float], b: list[float]) -> float:
    x, y = np.asarray(a), np.asarray(b)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def test_embeddings_of_related_texts_are_closer_float_and_base64(
        served: dict[str, Any]) -> None:
    api = served["api"]
    texts = ["How do I reset my password?", "I forgot my password and cannot log in.",
             "The cathedral was built in the twelfth century."]
    for encoding in ("float", "base64"):
        raw = api.embeddings.with_raw_response.create(model="all-minilm-l6-v2", input=texts,
                                                      encoding_format=encoding)
        result = raw.parse()
        vectors = [d.embedding for d in sorted(result.data, key=lambda d: d.index)]
        if encoding == "base64":  # asked for explicitly, the SDK hands it over undecoded
            vectors = [np.frombuffer(base64.b64decode(v), "<f4").tolist() for v in vectors]
        assert [len(v) for v in vectors] == [384, 384, 384]
        assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
        # The same vectors retrieval indexes with.
        direct = get_embedder().embed(texts)
        assert np.allclose(np.asarray(vectors), direct, atol=1e-5)
        assert result.usage.prompt_tokens == result.usage.total_tokens > len(texts)
        row = requestlog.get(served["project"].store, raw.headers["x-request-id"])
        assert row is not None and row.status == 200 and row.principal == "ivy"
        assert row.finish_reason == "embedding" and row.variant is None
        assert [m["content"] for m in row.prompt] == texts
    # The SDK's default (it asks for base64 and decodes it), and a single string.
    one = api.embeddings.create(model="bundled:all-minilm-l6-v2", input=texts[0])
    assert len(one.data) == 1 and np.allclose(one.data[0].embedding, direct[0], atol=1e-5)


def test_embedding_errors_are_openai_errors(served: dict[str, Any]) -> None:
    api = served["api"]
    with pytest.raises(openai.NotFoundError) as caught:
        api.embeddings.create(model="text-embedding-3-small", input="hi")
    assert caught.value.body["code"] == "model_not_found"
    assert "all-minilm-l6-v2" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        api.embeddings.create(model="all-minilm-l6-v2", input="word " * 400)
    assert caught.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as caught:
        api.embeddings.create(model="all-minilm-l6-v2", input=[[1, 2, 3]])
    assert "token arrays" in caught.value.body["message"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=served["url"] + "/v1", api_key="tl-wrong", max_retries=0
                      ).embeddings.create(model="all-minilm-l6-v2", input="hi")


def test_embeddings_share_the_callers_rate_limit(served: dict[str, Any]) -> None:
    key = served["keys"].internal2
    statuses = [httpx.post(served["url"] + "/v1/embeddings",
                           json={"model": "all-minilm-l6-v2", "input": "hi"},
                           headers={"authorization": f"Bearer {key}"}, timeout=60).status_code
                for _ in range(10)]
    assert statuses[0] == 200 and statuses[-1] == 429


def test_models_lists_each_embedding_model_and_embeddings_takes_a_routers_model(
        served: dict[str, Any], tmp_path: Path) -> None:
    from tuneloop.engines.bundled import bundled_embedding_dir
    from tuneloop.governance import principals
    from tuneloop.router.features import build_features
    from tuneloop.router.model import QueryRouter
    from tuneloop.router.registry import register

    project = served["project"]
    # a key of its own: the module's server allows 8 requests a minute per key, which the
    # other tests of the module spend
    secret = principals.create_key(project.store, project.actor(), "ida",
                                   audience="internal").secret
    api = openai.OpenAI(base_url=served["url"] + "/v1", api_key=secret, max_retries=0,
                        timeout=60)
    ids = [m.id for m in api.models.list()]
    assert ids[-1] == "all-minilm-l6-v2" and ids.count("all-minilm-l6-v2") == 1
    assert "assistant" in ids[:-1]  # the chat models come first
    # A router registered with an embedding model of its own (a model folder on disk).
    folder = tmp_path / "support-minilm"
    folder.symlink_to(bundled_embedding_dir(), target_is_directory=True)
    texts = ["I was charged twice", "refund my invoice", "SSO login fails", "SAML error"]
    router = QueryRouter.fit(get_embedder().embed(texts), ["billing", "billing", "sso", "sso"],
                             build_features("embedding", str(folder)))
    router.save(tmp_path / "router", {"name": "support"})
    register(project, project.actor(), name="support", version=1, path=tmp_path / "router",
             dataset_version="tickets@v1", slice_field="category", labels=["billing", "sso"],
             tier=1, roots=frozenset(), lineage={"embedding_model": str(folder)})
    ids = [m.id for m in api.models.list()]
    assert ids[-2:] == ["all-minilm-l6-v2", "support-minilm"]
    by_name = api.embeddings.create(model="support-minilm", input=texts[:2])
    by_path = api.embeddings.create(model=str(folder), input=texts[:2])
    assert by_name.model == "support-minilm"
    vectors = np.asarray([d.embedding for d in by_name.data])
    assert np.allclose(vectors, [d.embedding for d in by_path.data], atol=1e-6)
    # The same weights as the bundled model, loaded from the router's folder.
    assert np.allclose(vectors, get_embedder().embed(texts[:2]), atol=1e-5)
    with pytest.raises(openai.NotFoundError) as caught:
        api.embeddings.create(model="support-minilm-v2", input="hi")
    assert "support-minilm" in caught.value.body["message"]
    assert "GET /v1/models" in caught.value.body["message"]
