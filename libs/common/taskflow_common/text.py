"""Text rules that both a validator and a JSON Schema ``pattern`` can state, so they agree.

A pattern here is written for every engine that reads TaskFlow's OpenAPI documents: ECMA-262
(JSON Schema's dialect, Swagger UI), Rust's fancy-regex (jsonschema-rs) and Python's ``re``
(generators such as hypothesis): character classes of ``\\uXXXX`` escapes, anchored by ``^`` and
by ``(?![\\s\\S])`` ("nothing follows") rather than ``$``, which in Python also matches before a
final newline, so a generator would produce names ending in one that the validator refuses.
"""

from __future__ import annotations

import unicodedata

WHITESPACE = "".join(character for character in map(chr, range(0x10000)) if character.isspace())
"""Every character ``str.strip()`` removes (Python's whitespace lies entirely in the BMP)."""


def _is_control(character: str) -> bool:
    return unicodedata.category(character) == "Cc"


def _character_class(characters: str) -> str:
    """The body of a regex character class matching exactly ``characters``, as ``\\uXXXX`` ranges."""
    points = sorted({ord(character) for character in characters})
    ranges: list[tuple[int, int]] = []
    for point in points:
        if ranges and ranges[-1][1] == point - 1:
            ranges[-1] = (ranges[-1][0], point)
        else:
            ranges.append((point, point))
    return "".join(f"\\u{low:04x}" if low == high else f"\\u{low:04x}-\\u{high:04x}" for low, high in ranges)


_CONTROL = _character_class("".join(character for character in map(chr, range(0x100)) if _is_control(character)))
_CONTROL_OR_SPACE = _character_class(
    "".join(character for character in map(chr, range(0x100)) if _is_control(character)) + WHITESPACE
)

NOT_BLANK = f"[^{_character_class(WHITESPACE)}]"
"""Pattern (unanchored, as JSON Schema applies it): at least one character ``strip()`` keeps."""

PRINTABLE_NOT_BLANK = f"^[^{_CONTROL}]*[^{_CONTROL_OR_SPACE}][^{_CONTROL}]*(?![\\s\\S])"
"""Pattern: no control character (Unicode category Cc) and at least one character ``strip()`` keeps."""


def has_control_characters(value: str) -> bool:
    """True if ``value`` contains a control character (Unicode category Cc: C0, DEL, C1)."""
    return any(_is_control(character) for character in value)
