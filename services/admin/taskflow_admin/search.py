"""The words of admin's user search: which three-character pieces (trigrams) of an email or a name
a search can be found by.

``GET /admin/users?q=`` finds users whose email or name holds ``q``, case-insensitively, as the
engine's regex with the ``i`` option decides (Go's ``regexp``: each character matches the
characters of its simple case-folding orbit, Unicode's CaseFolding.txt ``C`` and ``S`` mappings).
A substring search cannot use an ordinary index, so the read model keeps, per user, the trigrams
of their email and name (:data:`taskflow_admin.store.SEARCH`, a trigram index as PostgreSQL's
pg_trgm keeps) and a search first reads the users holding some of ``q``'s trigrams: a superset of
the matches, which the regex then decides.

The superset holds because both sides are folded alike where it matters: ASCII letters to lower
case, and the two other letters whose orbits hold an ASCII letter (U+017F LATIN SMALL LETTER LONG S
with ``s``, U+212A KELVIN SIGN with ``k``) to that letter. A trigram of ``q`` holding any other
non-ASCII character is not used (its orbit may hold characters this folding keeps apart); a ``q``
with no usable trigram is searched by the regex alone.
"""

from __future__ import annotations

FOLD = str.maketrans({**{chr(upper): chr(upper + 32) for upper in range(ord("A"), ord("Z") + 1)}, "\u017f": "s", "\u212a": "k"})


def folded(text: str) -> str:
    """``text`` with every character that case-folds onto an ASCII letter turned into that letter."""
    return text.translate(FOLD)


def trigrams(text: str) -> set[str]:
    """Every three consecutive characters of ``folded(text)``."""
    text = folded(text)
    return {text[start:start + 3] for start in range(len(text) - 2)}


def query_trigrams(q: str) -> list[str]:
    """The trigrams of ``q`` that every match holds (ASCII only), distinct, in their order in ``q``."""
    q = folded(q)
    return list(dict.fromkeys(gram for gram in (q[start:start + 3] for start in range(len(q) - 2)) if gram.isascii()))
