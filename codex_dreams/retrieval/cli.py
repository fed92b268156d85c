"""`codex query`: reading the queries, answering them, printing the answers (the command is in cli/main.py).

Imported only when `codex query` runs; nothing here imports Dagster or dbt.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from codex_dreams.retrieval.engine import InvalidQuery, RecallResponse, recaller_for, validate_k, validate_text


def read_queries(path: Path) -> list[tuple[object, str]]:
    """(id, text) per non-blank JSONL line; InvalidQuery naming the line for anything else."""
    name = "stdin" if str(path) == "-" else path.name
    if str(path) == "-":
        lines = sys.stdin.read().split("\n")
    else:
        if not path.exists():
            raise InvalidQuery(f"query file {path} does not exist")
        if not path.is_file():
            raise InvalidQuery(f"query file {path} is not a file")
        try:
            # split on "\n" only: str.splitlines() also splits inside a JSON string at U+2028, NEL and the like,
            # which JSON writers leave unescaped (json.dumps(..., ensure_ascii=False)); "\r" is JSON whitespace
            lines = path.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError:
            raise InvalidQuery(f"query file {path} is not UTF-8 text") from None
        except OSError as error:
            raise InvalidQuery(f"cannot read query file {path} ({error.strerror})") from None
    queries: list[tuple[object, str]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidQuery(f"{name} line {number}: not valid JSON ({error.msg})") from None
        except RecursionError:
            raise InvalidQuery(f"{name} line {number}: JSON nested too deeply") from None
        except ValueError:  # a number with more digits than Python reads
            raise InvalidQuery(f"{name} line {number}: not valid JSON (a number is too long)") from None
        if not isinstance(obj, dict):
            raise InvalidQuery(f'{name} line {number}: expected an object like {{"id": "q1", "text": "..."}}')
        if "text" not in obj:
            raise InvalidQuery(f'{name} line {number}: missing "text"')
        query_id = obj.get("id", number)
        if isinstance(query_id, bool) or not isinstance(query_id, (str, int)):
            raise InvalidQuery(f'{name} line {number}: "id" must be a string or an integer')
        if isinstance(query_id, str) and not query_id.isascii():
            try:
                query_id.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate ("\ud800" in the JSON): the answer could not be printed
                raise InvalidQuery(f'{name} line {number}: "id" is not valid Unicode text') from None
        try:
            text = validate_text(obj["text"])
        except InvalidQuery as error:
            raise InvalidQuery(f"{name} line {number}: {error}") from None
        queries.append((query_id, text))
    if not queries:
        raise InvalidQuery(f"{name} holds no queries")
    return queries


def run_query(*, text: str | None, path: Path | None, k: int, as_json: bool, explain: bool, settings,
              console, err_console) -> list[RecallResponse]:
    """Validate everything first (nothing is answered if any input is bad), then answer and print."""
    if (text is None) == (path is None):
        raise InvalidQuery("give exactly one of --text or --file")
    k = validate_k(k)
    queries = [(None, validate_text(text))] if text is not None else read_queries(path)
    engine = recaller_for(settings)
    responses = engine.recall_many(queries, k, explain=explain)
    if as_json:
        out = sys.stdout
        for response in responses:
            out.write(json.dumps(response.as_dict(explain=explain), ensure_ascii=False, default=str) + "\n")
        out.flush()
    else:
        print_text(responses, explain=explain, batch=path is not None, console=console)
    for warning in dict.fromkeys(w for r in responses for w in r.warnings):
        err_console.print(f"[yellow]warning:[/] {_escape(warning)}", highlight=False, soft_wrap=True)
    return responses


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def print_text(responses: list[RecallResponse], *, explain: bool, batch: bool, console) -> None:
    for response in responses:
        if batch:
            console.print(f"[bold]{_escape(str(response.id))}[/]: {_escape(response.text)}", highlight=False,
                          soft_wrap=True)
        if not response.results:
            console.print("  no memories found", highlight=False)
        for result in response.results:
            when = result.created_at.strftime("%Y-%m-%d %H:%M")
            console.print(f"{result.rank:>3}. [bold]{result.score:.3f}[/]  {when}  [dim]{result.memory_id}[/]",
                          highlight=False, soft_wrap=True)
            console.print(f"     {_escape(result.content)}", highlight=False, soft_wrap=True)
            if explain:
                console.print(f"     [cyan]{_escape(result.explanation['summary'])}[/]", highlight=False,
                              soft_wrap=True)
        if batch:
            console.print()
