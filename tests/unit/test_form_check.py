"""validation.FormCheck: every field of a form is checked before it is refused, and the refusal carries
each field's first problem, reading as the first one (what the JSON API and one-error pages show)."""

from __future__ import annotations

import pytest

from server.core import validation
from server.core.errors import Invalid


def test_every_field_is_checked_and_each_problem_kept_in_order():
    check = validation.FormCheck()
    email = check(validation.email, "not-an-email")
    name = check(validation.text, "Trail Notes", "display_name", "Display name", max_length=120)
    url = check(validation.web_url, "javascript:alert(1)", "blog_url", "Blog URL")
    assert (email, name, url) == (None, "Trail Notes", None)
    with pytest.raises(Invalid) as refused:
        check.done()
    assert [p.field for p in refused.value.problems] == ["email", "blog_url"]
    assert refused.value.field == "email" and refused.value.message == refused.value.problems[0].message
    assert refused.value.status_code == 422


def test_a_field_keeps_only_its_first_problem():
    check = validation.FormCheck()
    check.add(Invalid("Enter your email address.", field="email"))
    check.add(Invalid("That email is taken.", field="email"))
    check.add(Invalid("Something about the whole form."))
    with pytest.raises(Invalid) as refused:
        check.done()
    assert [p.message for p in refused.value.problems] == [
        "Enter your email address.",
        "Something about the whole form.",
    ]


def test_a_form_without_problems_passes():
    check = validation.FormCheck()
    assert check(validation.email, "Shop@Example.com") == "shop@example.com"
    check.done()  # no exception
    assert Invalid("x", field="f").problems[0].message == "x"  # a lone error stands for itself
