"""The text patterns say exactly what the validators check; timestamps are RFC 3339 only."""

from __future__ import annotations

import re

import pytest
from pydantic import TypeAdapter, ValidationError
from taskflow_common.text import (
    LINE_BREAKS_AND_TAB,
    NOT_BLANK,
    PRINTABLE,
    PRINTABLE_MULTILINE,
    PRINTABLE_NOT_BLANK,
    WHITESPACE,
    has_control_characters,
    printable,
    printable_multiline,
    printable_not_blank,
)
from taskflow_common.timestamps import Timestamp


def test_whitespace_is_everything_strip_removes_anywhere_in_unicode() -> None:
    assert WHITESPACE == "".join(character for character in map(chr, range(0x110000)) if character.isspace())


@pytest.mark.parametrize(
    "value", ["Ada", " Ada ", "Ada\u200cKing", "\u3000x", "x\u00a0", "👩\u200d💻", "", " ", "\u3000", "a\nb", "\x85", "a\x7f"]
)
def test_printable_not_blank_pattern_agrees_with_the_python_rule(value: str) -> None:
    python_rule = not has_control_characters(value) and bool(value.strip())
    assert bool(re.search(PRINTABLE_NOT_BLANK, value)) == python_rule
    assert bool(re.search(NOT_BLANK, value)) == bool(value.strip())


@pytest.mark.parametrize("value", ["", " ", "Ada", "a\nb", "a\tb\r\n", "\x00", "a\x7f", "\x85", "\n", "\u2028"])
def test_printable_and_multiline_patterns_agree_with_the_python_rule(value: str) -> None:
    assert bool(re.search(PRINTABLE, value)) == (not has_control_characters(value))
    assert bool(re.search(PRINTABLE_MULTILINE, value)) == (not has_control_characters(value, LINE_BREAKS_AND_TAB))


@pytest.mark.parametrize("value", ["", " ", "Ada", " Ada ", "a\nb", "a\tb\r\n", "\x00", "a\x7f", "\x85", "\u3000"])
@pytest.mark.parametrize(
    ("validator", "pattern"),
    [(printable, PRINTABLE), (printable_multiline, PRINTABLE_MULTILINE), (printable_not_blank, PRINTABLE_NOT_BLANK)],
)
def test_each_validator_accepts_exactly_what_its_pattern_matches(validator, pattern: str, value: str) -> None:  # noqa: ANN001
    try:
        validator(value)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == bool(re.search(pattern, value))


def test_printable_not_blank_keeps_the_value_without_surrounding_spaces() -> None:
    assert printable_not_blank("\u3000 Ada King\u00a0") == "Ada King"


def test_a_trailing_newline_does_not_slip_past_the_end_anchor() -> None:
    assert not re.search(PRINTABLE_NOT_BLANK, "Ada\n")
    assert not re.search(PRINTABLE, "Ada\n")


@pytest.mark.parametrize("value", ["0.5", "1700000000", "2026-01-01", "2026-01-01 10:00:00Z", "2026-01-01T10:00Z", "2026-01-01T10:00:00"])
def test_timestamps_other_than_rfc3339_with_offset_are_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(Timestamp).validate_python(value)


def test_rfc3339_timestamps_with_offset_or_z_are_parsed() -> None:
    parsed = TypeAdapter(Timestamp).validate_python("2026-01-31T09:00:00.25+01:00")
    assert parsed.utcoffset() is not None and parsed.isoformat() == "2026-01-31T09:00:00.250000+01:00"
    assert TypeAdapter(Timestamp).json_schema() == {"type": "string", "format": "date-time"}
