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


_CONTROLS = "".join(character for character in map(chr, range(0x100)) if _is_control(character))
LINE_BREAKS_AND_TAB = "\t\n\r"
"""The control characters a multi-line text may hold."""
_CONTROL = _character_class(_CONTROLS)
_CONTROL_OR_SPACE = _character_class(_CONTROLS + WHITESPACE)
_CONTROL_BUT_LINE_BREAKS = _character_class("".join(c for c in _CONTROLS if c not in LINE_BREAKS_AND_TAB))

NOT_BLANK = f"[^{_character_class(WHITESPACE)}]"
"""Pattern (unanchored, as JSON Schema applies it): at least one character ``strip()`` keeps."""

PRINTABLE_NOT_BLANK = f"^[^{_CONTROL}]*[^{_CONTROL_OR_SPACE}][^{_CONTROL}]*(?![\\s\\S])"
"""Pattern: no control character (Unicode category Cc) and at least one character ``strip()`` keeps."""

PRINTABLE = f"^[^{_CONTROL}]*(?![\\s\\S])"
"""Pattern: no control character (Unicode category Cc)."""

PRINTABLE_MULTILINE = f"^[^{_CONTROL_BUT_LINE_BREAKS}]*(?![\\s\\S])"
"""Pattern: no control character but tab, line feed and carriage return."""


def has_control_characters(value: str, allowed: str = "") -> bool:
    """True if ``value`` contains a control character (Unicode category Cc: C0, DEL, C1) other
    than those in ``allowed`` (e.g. :data:`LINE_BREAKS_AND_TAB`)."""
    return any(_is_control(character) and character not in allowed for character in value)


def printable(value: str, allowed: str = "") -> str:
    """``value`` unchanged, the validator of :data:`PRINTABLE` (with ``allowed`` =
    :data:`LINE_BREAKS_AND_TAB`, of :data:`PRINTABLE_MULTILINE`).

    Raises:
        ValueError: ``value`` holds a control character not in ``allowed``.
    """
    if has_control_characters(value, allowed):
        raise ValueError("must not contain control characters")
    return value


def printable_multiline(value: str) -> str:
    """``value`` unchanged, the validator of :data:`PRINTABLE_MULTILINE`.

    Raises:
        ValueError: ``value`` holds a control character other than tab, line feed, carriage return.
    """
    return printable(value, LINE_BREAKS_AND_TAB)


def printable_not_blank(value: str) -> str:
    """``value`` without surrounding whitespace, the validator of :data:`PRINTABLE_NOT_BLANK`.

    Raises:
        ValueError: ``value`` holds a control character, or nothing but whitespace.
    """
    if not printable(value).strip():
        raise ValueError("must not be blank")
    return value.strip()
