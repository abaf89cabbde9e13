"""Vector search over permission partitions: exact and IVF answers, and the one-thread query."""

from __future__ import annotations

import threading

import faiss
import numpy as np

from tuneloop.rag.vectors import VectorIndex


def _unit_rows(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_exact_search_ranks_rows_like_a_matrix_product_within_visible_partitions():
    vectors = _unit_rows(300)
    keys = ["a"] * 120 + ["b"] * 100 + ["c"] * 80
    index = VectorIndex.build(vectors, keys)
    query = vectors[130] + 0.1 * vectors[10]
    query = (query / np.linalg.norm(query)).astype(np.float32)
    rows, sims = index.search(query, 5, {"a", "b"})
    scores = vectors[:220] @ query
    expected = np.argsort(-scores, kind="stable")[:5]
    assert rows.tolist() == expected.tolist()
    assert rows[0] == 130
    np.testing.assert_allclose(sims, scores[expected], rtol=1e-5)


def test_a_partition_smaller_than_k_gives_all_its_rows_and_nothing_invented():
    vectors = _unit_rows(30)
    index = VectorIndex.build(vectors, ["a"] * 3 + ["b"] * 27)
    rows, sims = index.search(vectors[1], 10, {"a"})
    assert sorted(rows.tolist()) == [0, 1, 2]
    assert rows[0] == 1 and len(sims) == 3


def test_ivf_search_finds_the_query_row_and_leaves_the_callers_thread_count_alone():
    vectors = _unit_rows(2_000, seed=1)
    index = VectorIndex.build(vectors, ["a"] * 2_000, exact_max=100, nprobe=10_000)
    assert index.partitions["a"].ivf is not None
    before = faiss.omp_get_max_threads()
    rows, _ = index.search(vectors[777], 3, {"a"})
    assert rows[0] == 777
    assert faiss.omp_get_max_threads() == before


def test_searches_from_several_threads_at_once_agree_with_one_at_a_time():
    vectors = _unit_rows(500, seed=2)
    index = VectorIndex.build(vectors, ["a"] * 250 + ["b"] * 250)
    alone = [index.search(vectors[i], 4, {"a", "b"})[0].tolist() for i in range(0, 500, 25)]
    together: dict[int, list[int]] = {}

    def run(i: int) -> None:
        together[i] = index.search(vectors[i], 4, {"a", "b"})[0].tolist()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(0, 500, 25)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [together[i] for i in range(0, 500, 25)] == alone
