"""Engines benchmark on the bundled SmolLM2-135M-Instruct, on this machine.

For each engine (llama.cpp, transformers, OpenAI HTTP against llama-cpp-python's server on
loopback): time to first token, decode tokens/s, and batch throughput. The llama.cpp engine's
decode speed is compared with raw llama-cpp-python called directly in the same run, with the
same prompt tokens and threads, runs interleaved so shared-CPU noise hits both alike
(goal: ratio >= 0.95).

    .venv/bin/python bench/engines.py [--quick]

The last line of output is one JSON object with the figures and their goals.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from rich.console import Console
from rich.table import Table

from tuneloop.engines import GenerationParams
from tuneloop.engines._common import physical_cores
from tuneloop.engines.bundled import bundled_gguf_path, bundled_hf_dir

PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]
BATCH = [[{"role": "user", "content": q}] for q in (
    "Explain photosynthesis.", "Write a poem about rain.", "What is a prime number?",
    "Describe the city of Paris.", "How do airplanes fly?", "Give three tips for sleeping well.",
    "What is machine learning?", "Tell me about the ocean.")]
GOAL_DECODE_RATIO = 0.95

console = Console(stderr=False)


def decode_tps(tokens: int, ttft: float, total: float) -> float:
    """Tokens after the first, per second of decoding (prefill excluded)."""
    return (tokens - 1) / (total - ttft) if tokens > 1 and total > ttft else 0.0


def raw_llama_run(llm, prompt_tokens: list[int], max_tokens: int) -> tuple[int, float, float]:
    """Raw llama-cpp-python: greedy tokens until EOG or max_tokens -> (tokens, ttft, total)."""
    import llama_cpp

    started = time.perf_counter()
    llm.reset()
    n, ttft = 0, 0.0
    vocab = llm._model.vocab
    for token in llm.generate(prompt_tokens, temp=0.0, top_k=0, top_p=1.0, min_p=0.0,
                              repeat_penalty=1.0, reset=True):
        if n == 0:
            ttft = time.perf_counter() - started
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            break
        llm.detokenize([token])  # the engine decodes every token too: same work
        n += 1
        if n >= max_tokens:
            break
    return n, ttft, time.perf_counter() - started


def bench_llama_cpp(rounds: int, max_tokens: int, batch_n: int, threads: int) -> dict:
    from llama_cpp import Llama

    from tuneloop.engines.llama_cpp import FLASH_ATTENTION, LlamaCppEngine

    path = bundled_gguf_path()
    engine = LlamaCppEngine(path, n_ctx=2048, n_threads=threads)
    # the same llama.cpp settings as the engine, so the ratio measures the wrapper only
    raw = Llama(model_path=str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                verbose=False, flash_attn=FLASH_ATTENTION)
    prompt_tokens = engine._prompt_tokens(PROMPT)
    params = GenerationParams(max_tokens=max_tokens)
    engine.chat(PROMPT, GenerationParams(max_tokens=4))  # warm-up both
    raw_llama_run(raw, prompt_tokens, 4)
    ours, theirs, ttfts = [], [], []
    for _ in range(rounds):
        n, ttft, total = raw_llama_run(raw, prompt_tokens, max_tokens)
        theirs.append(decode_tps(n, ttft, total))
        out = engine.chat(PROMPT, params)
        ours.append(decode_tps(out.completion_tokens, out.ttft_s, out.total_s))
        ttfts.append(out.ttft_s)
    raw.close()
    started = time.perf_counter()
    outs = engine.batch(BATCH[:batch_n], GenerationParams(max_tokens=max_tokens // 2))
    batch_s = time.perf_counter() - started
    engine.close()
    return {"ttft_s": statistics.median(ttfts), "decode_tps": statistics.median(ours),
            "raw_decode_tps": statistics.median(theirs),
            "batch_tps": sum(o.completion_tokens for o in outs) / batch_s}


def bench_transformers(rounds: int, max_tokens: int, batch_n: int, cache: Path) -> dict:
    from tuneloop.engines.transformers import TransformersEngine

    engine = TransformersEngine(bundled_hf_dir(cache))
    params = GenerationParams(max_tokens=max_tokens)
    engine.chat(PROMPT, GenerationParams(max_tokens=4))
    tps, ttfts = [], []
    for _ in range(rounds):
        out = engine.chat(PROMPT, params)
        tps.append(decode_tps(out.completion_tokens, out.ttft_s, out.total_s))
        ttfts.append(out.ttft_s)
    half = GenerationParams(max_tokens=max_tokens // 2)
    started = time.perf_counter()
    singles = [engine.chat(c, half) for c in BATCH[:batch_n]]
    single_s = time.perf_counter() - started
    started = time.perf_counter()
    batched = engine.batch(BATCH[:batch_n], half)
    batch_s = time.perf_counter() - started
    return {"ttft_s": statistics.median(ttfts), "decode_tps": statistics.median(tps),
            "batch_tps": sum(o.completion_tokens for o in batched) / batch_s,
            "sequential_tps": sum(o.completion_tokens for o in singles) / single_s}


def bench_openai(rounds: int, max_tokens: int, batch_n: int, threads: int) -> dict:
    from tuneloop.engines.openai import OpenAIEngine

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.TemporaryFile()  # noqa: SIM115  (closed in finally)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gguf_path()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
         "--n_threads", str(threads), "--model_alias", "smollm2"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        engine = OpenAIEngine(f"http://127.0.0.1:{port}/v1", "smollm2", max_retries=40,
                              backoff_s=0.25, max_concurrency=1)
        params = GenerationParams(max_tokens=max_tokens)
        engine.chat(PROMPT, GenerationParams(max_tokens=4))  # waits for the server (retries)
        tps, ttfts = [], []
        for _ in range(rounds):
            final = None
            for delta in engine.stream(PROMPT, params):
                final = delta.completion or final
            tps.append(decode_tps(final.completion_tokens, final.ttft_s, final.total_s))
            ttfts.append(final.ttft_s)
        started = time.perf_counter()
        outs = engine.batch(BATCH[:batch_n], GenerationParams(max_tokens=max_tokens // 2))
        batch_s = time.perf_counter() - started
        engine.close()
        return {"ttft_s": statistics.median(ttfts), "decode_tps": statistics.median(tps),
                "batch_tps": sum(o.completion_tokens for o in outs) / batch_s}
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _short(figures: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in figures.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and tokens")
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--cache-dir", type=Path,
                        default=Path.home() / ".cache" / "tuneloop" / "models",
                        help="where the bundled model's safetensors copy is kept")
    parser.add_argument("--no-http", action="store_true", help="skip the OpenAI HTTP engine")
    args = parser.parse_args()
    rounds, max_tokens, batch_n = (2, 32, 4) if args.quick else (7, 128, 8)

    results: dict[str, dict] = {}
    with console.status("llama.cpp engine vs raw llama-cpp-python..."):
        results["llama.cpp"] = bench_llama_cpp(rounds, max_tokens, batch_n, args.threads)
    console.print(f"llama.cpp done: {_short(results['llama.cpp'])}")
    with console.status("transformers engine..."):
        results["transformers"] = bench_transformers(rounds, max_tokens, batch_n, args.cache_dir)
    console.print(f"transformers done: {_short(results['transformers'])}")
    if not args.no_http:
        with console.status("OpenAI HTTP engine against llama-cpp-python's server..."):
            results["openai"] = bench_openai(rounds, max_tokens, batch_n, args.threads)

    cpp = results["llama.cpp"]
    ratio = cpp["decode_tps"] / cpp["raw_decode_tps"] if cpp["raw_decode_tps"] else 0.0
    table = Table(title=f"Engines on the bundled SmolLM2-135M ({args.threads} threads, "
                        f"{rounds} rounds x {max_tokens} tokens, medians)")
    for col in ("engine", "TTFT ms", "decode tok/s", "vs raw llama.cpp", "batch tok/s"):
        table.add_column(col, justify="right" if col != "engine" else "left")
    table.add_row("raw llama-cpp-python (baseline)", "-", f"{cpp['raw_decode_tps']:.1f}",
                  "1.00", "-")
    for name, r in results.items():
        vs = f"{r['decode_tps'] / cpp['raw_decode_tps']:.2f}" if cpp["raw_decode_tps"] else "-"
        table.add_row(name, f"{r['ttft_s'] * 1000:.0f}", f"{r['decode_tps']:.1f}", vs,
                      f"{r['batch_tps']:.1f}")
    console.print(table)
    tr = results["transformers"]
    speedup = tr["batch_tps"] / tr["sequential_tps"] if tr["sequential_tps"] else 0.0
    console.print(f"llama.cpp engine decode / raw: [bold]{ratio:.3f}[/] (goal >= "
                  f"{GOAL_DECODE_RATIO}); transformers batch of {batch_n} vs one at a time: "
                  f"[bold]{speedup:.2f}x[/]")
    figures = {"bench": "engines", "quick": args.quick, "threads": args.threads,
               "decode_ratio": round(ratio, 3), "goal_decode_ratio": GOAL_DECODE_RATIO,
               "transformers_batch_speedup": round(speedup, 2),
               "goal_transformers_batch_speedup": 1.0}
    for name, r in results.items():
        key = name.replace(".", "_")
        for k, v in r.items():
            figures[f"{key}_{k}"] = round(v, 4)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
