"""What the OpenAPI document promises about errors, checked on the document itself (issue 14,
item 8); test_openapi_conformance checks the live answers against it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from server.http.web import ErrorBody, ErrorDetail
from tests.test_routes_guarded import _inventory_app

ERROR_REF = "#/components/schemas/ErrorBody"


def _document(tmp_path: Path) -> dict[str, Any]:
    app = _inventory_app(tmp_path)
    return msgspec.json.decode(msgspec.json.encode(app.openapi_schema.to_schema()))


def _refs(schema: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        return {schema["$ref"]}
    return {ref for part in schema.get("oneOf", []) + schema.get("anyOf", []) for ref in _refs(part)}


def _operations(document: dict[str, Any]):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method.upper(), operation


def test_every_4xx_of_every_operation_is_the_error_body_or_its_own_result(tmp_path: Path) -> None:
    document = _document(tmp_path)
    problems = []
    for path, method, operation in _operations(document):
        for status, response in operation["responses"].items():
            if not status.startswith("4"):
                continue
            refs = _refs(response["content"]["application/json"]["schema"])
            # The intake answers a refused conversion with its result (and a reason code) instead.
            own = {"#/components/schemas/ConversionResult", "#/components/schemas/ConversionResults"}
            if ERROR_REF not in refs and not (refs and refs <= own and "conversion" in path + str(operation["tags"])):
                problems.append(f"{method} {path} {status}: {refs}")
    assert not problems, problems


def test_every_operation_behind_an_api_key_documents_401_and_403(tmp_path: Path) -> None:
    document = _document(tmp_path)
    for path, method, operation in _operations(document):
        if path.startswith("/api/"):
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
            assert operation.get("security") == [{"apiKey": []}], (method, path)


def test_the_postback_documents_200_and_its_refusals_not_201(tmp_path: Path) -> None:
    document = _document(tmp_path)
    for method in ("get", "post"):
        responses = document["paths"]["/postback"][method]["responses"]
        assert "201" not in responses
        assert {"200", "401", "404", "409", "422"} <= set(responses)


def test_the_documented_error_body_is_the_one_sent(tmp_path: Path) -> None:
    document = _document(tmp_path)
    schemas = document["components"]["schemas"]
    assert schemas["ErrorBody"]["required"] == ["error"]
    detail = schemas[schemas["ErrorBody"]["properties"]["error"]["$ref"].rsplit("/", 1)[1]]
    assert set(detail["required"]) == {"code", "message"} and "field" in detail["properties"]
    # What web.error_response encodes, decoded back through the documented type.
    sent = msgspec.json.encode(ErrorBody(ErrorDetail(code="not_found", message="There is nothing here.")))
    assert msgspec.json.decode(sent) == {"error": {"code": "not_found", "message": "There is nothing here."}}
    msgspec.json.decode(sent, type=ErrorBody)
