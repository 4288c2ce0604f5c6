"""The payload screen's headers: stored as a dict or as a list of (name, value) pairs (a
repeated header kept once per value), shown the same way, with secrets masked either way."""

from __future__ import annotations

from workbench.services.views import pretty_json
from workbench.tui.screens.payload import headers_text


def test_a_dict_shows_as_its_json() -> None:
    headers = {"content-type": "application/json", "stripe-signature": "t=1,v1=abc"}
    assert headers_text(headers) == pretty_json(headers)
    assert headers_text({}) == "{}"


def test_pairs_keep_repeated_headers_in_order() -> None:
    text = headers_text([["x-forwarded-for", "10.0.0.1"], ["content-type", "application/json"],
                         ["x-forwarded-for", "10.0.0.2"]])
    assert text.splitlines() == ["{", '  "x-forwarded-for": "10.0.0.1",', '  "content-type": "application/json",',
                                 '  "x-forwarded-for": "10.0.0.2"', "}"]


def test_secret_headers_are_masked_in_either_shape() -> None:
    for headers in ({"Authorization": "Basic c2VjcmV0", "X-Api-Key": "k-123"},
                    [("Authorization", "Basic c2VjcmV0"), ("X-Api-Key", "k-123")]):
        text = headers_text(headers)
        assert "c2VjcmV0" not in text and "k-123" not in text
        assert text.count("[redacted]") == 2


def test_an_unknown_shape_is_still_shown() -> None:
    assert headers_text("raw") == '"raw"'
