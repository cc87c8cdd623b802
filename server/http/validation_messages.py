"""What a person reads when Litestar refuses a parameter or a body before any handler runs.

Litestar's ValidationException says "Validation failed for GET /publisher/payouts?page=-1" with
msgspec's words in `extra` ("Expected `int` >= 1"): right for a developer, not for the person who
typed the address. This turns each problem into a sentence, with the bounds the handler declares."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request
from litestar.exceptions import ValidationException

from server.core.i18n import _, _l

_TYPE_WORDS = {
    "int": _l("a whole number"),
    "float": _l("a number"),
    "number": _l("a number"),
    "str": _l("text"),
    "bool": _l("true or false"),
    "object": _l("a JSON object"),
    "array": _l("a list"),
    "null": _l("null"),
}
# Where the value at fault was sent, as a noun phrase naming it: "“page” in the address".
_WHERE = {
    "query": _l("“%(key)s” in the address"),
    "path": _l("“%(key)s” in the address"),
    "body": _l("“%(key)s” in the body"),
    "header": _l("header “%(key)s”"),
    "cookie": _l("cookie “%(key)s”"),
}
_BOUNDS = {
    ">=": _l("%(what)s must be %(kind)s at least %(bound)s."),
    "<=": _l("%(what)s must be %(kind)s at most %(bound)s."),
    ">": _l("%(what)s must be %(kind)s more than %(bound)s."),
    "<": _l("%(what)s must be %(kind)s less than %(bound)s."),
}
_LENGTHS = {
    ">=": _l("%(what)s must have at least %(bound)s items or characters."),
    "<=": _l("%(what)s must have at most %(bound)s items or characters."),
    ">": _l("%(what)s must have more than %(bound)s items or characters."),
    "<": _l("%(what)s must have less than %(bound)s items or characters."),
}
NOT_UNDERSTOOD = _l("The request could not be understood.")

_GOT = re.compile(r"Expected `([^`]+)`, got `([^`]+)`")
_BOUND = re.compile(r"Expected `([^`]+)` (>=|<=|>|<) (\S+)")
_LENGTH = re.compile(r"Expected `([^`]+)` of length (>=|<=|>|<) (\d+)")
_MISSING = re.compile(r"Object missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"Object contains unknown field `([^`]+)`")
_MISSING_PARAM = re.compile(r"Missing required (\w+) parameter '([^']+)'")


def _type_words(spec: str) -> str:
    kinds = [str(_TYPE_WORDS.get(part.strip(), part.strip())) for part in spec.split("|")]
    return kinds[0] if len(kinds) == 1 else _("%(first)s or %(second)s", first=", ".join(kinds[:-1]), second=kinds[-1])


def _declared_range(request: Request, key: str) -> tuple[Any, Any]:
    """The ge/le the handler declares for parameter `key` (None, None when it declares none)."""
    handler = request.scope.get("route_handler")
    parameters = getattr(getattr(handler, "parsed_fn_signature", None), "parameters", {})
    kwarg = getattr(parameters.get(key), "kwarg_definition", None)
    return getattr(kwarg, "ge", None), getattr(kwarg, "le", None)


def _named(key: str, source: str) -> str:
    """The value at fault as a person reads it: "“page” in the address", or "“page”"."""
    where = _WHERE.get(source)
    return where % {"key": key} if where is not None else _("“%(key)s”", key=key)


def _sentence(request: Request, problem: dict[str, Any]) -> str:
    key, raw = str(problem.get("key") or ""), str(problem.get("message") or "")
    source = problem.get("source")
    source = str(getattr(source, "value", source) or "")  # Litestar gives a ParamType for parameters
    what = _named(key, source) if key else _("The value")
    if match := _MISSING.search(raw):
        if key:
            return _("“%(field)s” is required in %(what)s.", field=match.group(1), what=what)
        return _("“%(field)s” is required.", field=match.group(1))
    if match := _UNKNOWN.search(raw):
        return _("“%(field)s” is not something this address takes.", field=match.group(1))
    if raw.startswith("JSON is malformed"):
        return _("The body is not valid JSON.")
    if match := _LENGTH.search(raw):
        return str(_LENGTHS[match.group(2)]) % {"what": what, "bound": match.group(3)}
    if (match := _BOUND.search(raw)) or (match := _GOT.search(raw)):
        kind = _type_words(match.group(1))
        low, high = _declared_range(request, key) if key else (None, None)
        if low is not None and high is not None:
            return _("%(what)s must be %(kind)s from %(low)s to %(high)s.", what=what, kind=kind, low=low, high=high)
        if match.re is _BOUND:
            return str(_BOUNDS[match.group(2)]) % {"what": what, "kind": kind, "bound": match.group(3)}
        return _("%(what)s must be %(kind)s.", what=what, kind=kind)
    if key and raw:
        return _("%(what)s: %(problem)s", what=what, problem=raw)
    return raw or str(NOT_UNDERSTOOD)


def validation_message(request: Request, exc: ValidationException) -> tuple[str, str | None]:
    """(a message for a person, the first parameter at fault) for Litestar's ValidationException."""
    problems = [p for p in (exc.extra or []) if isinstance(p, dict)] if isinstance(exc.extra, list) else []
    if not problems:
        detail = exc.detail or ""
        if match := _MISSING_PARAM.search(detail):
            source, key = match.group(1), match.group(2)
            return _("%(what)s is required.", what=_named(key, source)), key
        if detail.startswith("Validation failed for"):  # no details given: do not echo the URL back
            return str(NOT_UNDERSTOOD), None
        return detail or str(NOT_UNDERSTOOD), None
    sentences = [_sentence(request, p) for p in problems]
    first = next((str(p["key"]) for p in problems if p.get("key")), None)
    text = " ".join(s[0].upper() + s[1:] if s and s[0].isalpha() else s for s in sentences)
    return text, first
