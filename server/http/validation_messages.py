"""What a person reads when Litestar refuses a parameter or a body before any handler runs.

Litestar's ValidationException says "Validation failed for GET /publisher/payouts?page=-1" with
msgspec's words in `extra` ("Expected `int` >= 1"): right for a developer, not for the person who
typed the address. This turns each problem into a sentence, with the bounds the handler declares."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request
from litestar.exceptions import ValidationException

_TYPE_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "number": "a number",
    "str": "text",
    "bool": "true or false",
    "object": "a JSON object",
    "array": "a list",
    "null": "null",
}
_COMPARISONS = {">=": "at least", "<=": "at most", ">": "more than", "<": "less than"}
_WHERE = {
    "query": "in the address",
    "path": "in the address",
    "body": "in the body",
    "header": "header",
    "cookie": "cookie",
}

_GOT = re.compile(r"Expected `([^`]+)`, got `([^`]+)`")
_BOUND = re.compile(r"Expected `([^`]+)` (>=|<=|>|<) (\S+)")
_LENGTH = re.compile(r"Expected `([^`]+)` of length (>=|<=|>|<) (\d+)")
_MISSING = re.compile(r"Object missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"Object contains unknown field `([^`]+)`")
_MISSING_PARAM = re.compile(r"Missing required (\w+) parameter '([^']+)'")


def _type_words(spec: str) -> str:
    return " or ".join(_TYPE_WORDS.get(part.strip(), part.strip()) for part in spec.split("|"))


def _declared_range(request: Request, key: str) -> tuple[Any, Any]:
    """The ge/le the handler declares for parameter `key` (None, None when it declares none)."""
    handler = request.scope.get("route_handler")
    parameters = getattr(getattr(handler, "parsed_fn_signature", None), "parameters", {})
    kwarg = getattr(parameters.get(key), "kwarg_definition", None)
    return getattr(kwarg, "ge", None), getattr(kwarg, "le", None)


def _sentence(request: Request, problem: dict[str, Any]) -> str:
    key, raw = str(problem.get("key") or ""), str(problem.get("message") or "")
    source = problem.get("source")
    source = str(getattr(source, "value", source) or "")  # Litestar gives a ParamType for parameters
    what = f"“{key}” {_WHERE.get(source, '')}".strip() if key else ""
    if match := _MISSING.search(raw):
        return f"“{match.group(1)}” is required{' in ' + what if what else ''}."
    if match := _UNKNOWN.search(raw):
        return f"“{match.group(1)}” is not something this address takes."
    if raw.startswith("JSON is malformed"):
        return "The body is not valid JSON."
    if match := _LENGTH.search(raw):
        words = _COMPARISONS[match.group(2)]
        return f"{what or 'The value'} must have {words} {match.group(3)} items or characters."
    if (match := _BOUND.search(raw)) or (match := _GOT.search(raw)):
        kind = _type_words(match.group(1))
        low, high = _declared_range(request, key) if key else (None, None)
        if low is not None and high is not None:
            return f"{what} must be {kind} from {low} to {high}."
        if match.re is _BOUND:
            return f"{what or 'The value'} must be {kind} {_COMPARISONS[match.group(2)]} {match.group(3)}."
        return f"{what or 'The value'} must be {kind}."
    return f"{what}: {raw}" if what and raw else raw or "The request could not be understood."


def validation_message(request: Request, exc: ValidationException) -> tuple[str, str | None]:
    """(a message for a person, the first parameter at fault) for Litestar's ValidationException."""
    problems = [p for p in (exc.extra or []) if isinstance(p, dict)] if isinstance(exc.extra, list) else []
    if not problems:
        detail = exc.detail or ""
        if match := _MISSING_PARAM.search(detail):
            return f"“{match.group(2)}” is required {_WHERE.get(match.group(1), '')}.".replace(" .", "."), match.group(
                2
            )
        if detail.startswith("Validation failed for"):  # no details given: do not echo the URL back
            return "The request could not be understood.", None
        return detail or "The request could not be understood.", None
    sentences = [_sentence(request, p) for p in problems]
    first = next((str(p["key"]) for p in problems if p.get("key")), None)
    text = " ".join(s[0].upper() + s[1:] if s and s[0].isalpha() else s for s in sentences)
    return text, first
