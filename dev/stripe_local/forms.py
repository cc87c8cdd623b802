"""Stripe's request encoding: form fields with nested keys (`a[b][0][c]=v`, `expand[]=x`) into dicts and lists."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from dev.stripe_local.store import StripeError

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


def parse(raw: str) -> dict[str, Any]:
    """Decode a query string or a form body the way Stripe does; `[]` appends, all-digit keys become lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        match = _KEY.match(key)
        if not match:
            raise StripeError(400, f"Invalid parameter name: {key}", param=key)
        parts = [match.group(1), *_PART.findall(match.group(2))]
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                part = str(len(node))
            if last:
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise StripeError(400, f"Invalid parameter: {key} mixes a value and nested keys", param=key)
                node = child
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def check_known(params: dict[str, Any], allowed: set[str]) -> None:
    for key in params:
        if key not in allowed | {"expand"}:
            raise StripeError(400, f"Received unknown parameter: {key}", param=key, code="parameter_unknown")


def required(params: dict[str, Any], name: str, label: str | None = None) -> Any:
    value = params.get(name)
    if value in (None, "", {}, []):
        raise StripeError(
            400, f"Missing required param: {label or name}.", param=label or name, code="parameter_missing"
        )
    return value


def integer(value: Any, param: str, minimum: int | None = None) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise StripeError(400, f"Invalid integer: {value}", param=param, code="parameter_invalid_integer")
    number = int(value)
    if minimum is not None and number < minimum:
        raise StripeError(400, f"This value must be greater than or equal to {minimum}.", param=param)
    return number


def string_map(value: Any, param: str) -> dict[str, str]:
    """metadata: a flat map of strings; an empty value unsets the key, as on Stripe."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict) or any(not isinstance(v, str) for v in value.values()):
        raise StripeError(400, f"Invalid object: {param} must be a hash of strings", param=param)
    return {k: v for k, v in value.items() if v != ""}


def expand_list(params: dict[str, Any]) -> list[str]:
    value = params.get("expand", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
        raise StripeError(400, "Invalid array", param="expand")
    return value
