"""The 413 page names the limit a person can act on: the file limit an upload route declares
(web.UPLOAD_LIMIT, bytes or a function of the settings), else the route's request body limit."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from litestar import Request
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from server.core import locale
from server.http.web import UPLOAD_LIMIT, handle_http_error


class Route:
    """What the 413 answer reads of a route handler: its options and its body limit."""

    def __init__(self, opt: dict, body_limit: int) -> None:
        self.opt = opt
        self.body_limit = body_limit

    def resolve_request_max_body_size(self) -> int:
        return self.body_limit


def too_large(route: Route, path: str = "/advertiser/campaigns/1/creatives/image") -> str:
    app = SimpleNamespace(state=SimpleNamespace(settings=SimpleNamespace(max_upload_bytes=512 * 1024)))
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "server": ("affnet.example", 80),
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "route_handler": route,
        "litestar_app": app,
    }
    # The 413 comes after the language middleware (a body is read by the route): the locale is set.
    with locale.using(locale.current() or "en_US"):
        response = handle_http_error(Request(scope), RequestEntityTooLarge())
    assert response.status_code == 413
    return response.context["message"] if hasattr(response, "context") else response.content.error.message


@pytest.mark.parametrize(
    ("opt", "said"),
    [
        ({}, "the 2 MB limit"),
        ({UPLOAD_LIMIT: 1024 * 1024}, "the 1,024 KB limit"),
        ({UPLOAD_LIMIT: lambda settings: settings.max_upload_bytes}, "the 512 KB limit"),
    ],
    ids=["body-limit", "declared-bytes", "declared-from-settings"],
)
def test_the_413_page_names_the_declared_file_limit_else_the_body_limit(opt, said):
    assert too_large(Route(opt, 2 * 1024 * 1024)) == f"The file is larger than {said}; choose a smaller file."


def test_the_limit_is_written_in_the_readers_language_and_digits():
    with locale.using("fr_FR"):
        message = too_large(Route({}, 2_500_000))
    assert message == "Le fichier dépasse la limite de 2,4 Mo ; choisissez un fichier plus petit."


def test_the_api_is_told_about_its_body_limit_in_json():
    assert too_large(Route({}, 10_000_000), "/api/v1/conversions") == (
        "The request body is larger than the 9.5 MB limit."
    )
