"""File metadata rules: what is stored and what a search filter may ask for."""

from __future__ import annotations

import re
from typing import Any

import pytest

from engine.errors import InvalidInput
from engine.metadata import MAX_KEYS, clean_metadata, metadata_filter


def test_clean_metadata_keeps_strings_integers_and_string_lists() -> None:
    raw = {"department": "legal", "year": 2024, "regions": ["eu", "us"], "_internal-id": "x"}
    assert clean_metadata(raw) == raw
    assert clean_metadata(None) == {}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ([1, 2], "must be a JSON object"),
        ({"public": True}, "booleans cannot be matched"),
        ({"score": 0.5}, "strings, integers or lists of strings"),
        ({"nested": {"a": 1}}, "strings, integers or lists of strings"),
        ({"ids": [1, 2]}, "at most 32 strings"),
        ({"big": 2**60}, "within +-2^53"),
        ({"a.b": "x"}, "must be a letter"),
        ({"": "x"}, "must be a letter"),
        ({"long": "x" * 257}, "at most 256 characters"),
        ({"nul": "a\x00b"}, "without NUL"),
        ({f"k{i}": i for i in range(MAX_KEYS + 1)}, "more than 32 keys"),
    ],
)
def test_clean_metadata_refuses_what_cannot_be_stored_or_matched(raw: Any, reason: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(reason)):
        clean_metadata(raw)


def test_metadata_filter_takes_one_value_or_a_list_of_accepted_values() -> None:
    assert metadata_filter({"department": "legal", "year": [2024, 2025]}) == (
        ("department", ("legal",)),
        ("year", (2024, 2025)),
    )
    assert metadata_filter({"department": []}) == (("department", ()),)  # matches nothing
    assert metadata_filter(None) is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"code": ["7", 7]}, "all strings or all integers"),
        ({"public": True}, "booleans cannot be matched"),
        ({"x": {"y": 1}}, "strings, integers or lists of strings"),
        ({"a b": "x"}, "must be a letter"),
    ],
)
def test_metadata_filter_refuses_what_qdrant_cannot_match(raw: Any, reason: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(reason)):
        metadata_filter(raw)
