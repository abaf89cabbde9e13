"""`tuneloop chat`: a quick interactive check of a model or a variant, streamed to the terminal."""

from __future__ import annotations

import sys

import typer

from tuneloop.cli._common import console, err_console, state


def chat(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", "-m",
                                     help="Model name, GGUF file or HF folder (default: base)."),
    variant: str | None = typer.Option(None, "--variant", "-v",
                                       help="A variant from tuneloop.yaml (prompt + retrieval)."),
    message: str | None = typer.Option(None, "--message", help="Ask once and exit."),
    max_tokens: int = typer.Option(256, help="Most tokens per answer."),
    temperature: float = typer.Option(0.0, help="0 is greedy (deterministic)."),
    engine: str | None = typer.Option(None, help="llama.cpp | transformers, where both can run."),
) -> None:
    """Chat with a model or variant; an empty line or Ctrl-D ends the session.

    Example:  tuneloop chat --variant baseline --message "How do I reset my password?"
    """
    from tuneloop.engines import GenerationParams, load_engine

    c = state(ctx)
    project = c.project()
    if model and variant:
        raise typer.BadParameter("give --model or --variant, not both")
    params = GenerationParams(max_tokens=max_tokens, temperature=temperature)
    history: list[dict[str, str]] = []
    if variant:
        from tuneloop.variants import get_variant

        v = get_variant(project, variant)
        actor = c.actor(project)
        label = f"variant {variant}"
    else:
        options = {"engine": engine} if engine else {}
        eng = load_engine(project, model or "base", **options)
        label = f"{eng.model_name} ({eng.kind})"
    if message is None:
        err_console.print(f"[dim]Chatting with {label}. Empty line or Ctrl-D to quit.[/]")
    while True:
        text = message if message is not None else _ask()
        if not text:
            break
        history.append({"role": "user", "content": text})
        if variant:
            stream = v.stream(v.prepare(history, actor), v.params(max_tokens=max_tokens,
                                                                  temperature=temperature))
        else:
            stream = eng.stream(history, params)
        answer = []
        for delta in stream:
            answer.append(delta.text)
            console.print(delta.text, end="", highlight=False, markup=False, soft_wrap=True)
            if delta.completion is not None:
                done = delta.completion
        console.print()
        err_console.print(f"[dim]{done.completion_tokens} tokens, first after "
                          f"{done.ttft_s * 1000:.0f} ms, {done.tokens_per_s:.1f} tok/s[/]")
        history.append({"role": "assistant", "content": "".join(answer)})
        if message is not None:
            break


def _ask() -> str:
    try:
        if sys.stdin.isatty():
            return console.input("[bold]you>[/] ").strip()
        return sys.stdin.readline().strip()
    except EOFError:
        return ""
