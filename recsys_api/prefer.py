"""The ``Prefer`` request header (RFC 7240), parsed by its grammar::

    Prefer     = 1#preference
    preference = token [ BWS "=" BWS word ] *( OWS ";" [ OWS parameter ] )
    parameter  = token [ BWS "=" BWS word ]
    word       = token / quoted-string

A header that does not follow it is a 400 saying where and what was expected.
Preference names are case-insensitive; of a preference given more than once only
the first counts, and preferences the API does not know are ignored (RFC 7240,
section 2). Empty list elements (``a, , b``) are allowed, as in every HTTP list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from recsys_api.errors import ApiError

__all__ = ["PATTERN", "Preference", "parse_prefer"]

_TOKEN_RE = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED_RE = r'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_WORD_RE = f"(?:{_TOKEN_RE}|{_QUOTED_RE})"
_VALUE_RE = f"(?:[ \\t]*=[ \\t]*{_WORD_RE})?"
_PREFERENCE_RE = f"{_TOKEN_RE}{_VALUE_RE}(?:[ \\t]*;(?:[ \\t]*{_TOKEN_RE}{_VALUE_RE})?)*"
#: The whole header as one regular expression (the OpenAPI document's ``pattern`` of
#: ``Prefer``); :func:`parse_prefer` scans by the same pieces and says where it fails.
PATTERN = f"^[ \\t]*(?:{_PREFERENCE_RE})?[ \\t]*(?:,[ \\t]*(?:{_PREFERENCE_RE})?[ \\t]*)*$"

_TOKEN = re.compile(_TOKEN_RE)
_QUOTED = re.compile(_QUOTED_RE)
_OWS = re.compile(r"[ \t]*")
_QUOTED_PAIR = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Preference:
    """One preference: its name (lowercase), its value and its parameters (names lowercase)."""

    name: str
    value: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)


class _Scanner:
    def __init__(self, header: str) -> None:
        self.header = header
        self.pos = 0

    def skip_space(self) -> None:
        match = _OWS.match(self.header, self.pos)
        if match is not None:  # always: it matches the empty string
            self.pos = match.end()

    def at(self, char: str) -> bool:
        if self.header.startswith(char, self.pos):
            self.pos += 1
            return True
        return False

    def done(self) -> bool:
        return self.pos >= len(self.header)

    def token(self, what: str) -> str:
        match = _TOKEN.match(self.header, self.pos)
        if match is None:
            raise self.error(f"expected {what} (a token)")
        self.pos = match.end()
        return match.group()

    def word(self, what: str) -> str:
        quoted = _QUOTED.match(self.header, self.pos)
        if quoted is not None:
            self.pos = quoted.end()
            return _QUOTED_PAIR.sub(r"\1", quoted.group()[1:-1])
        match = _TOKEN.match(self.header, self.pos)
        if match is None:
            raise self.error(f"expected {what} (a token or a quoted string)")
        self.pos = match.end()
        return match.group()

    def value(self, what: str) -> str | None:
        """``[ BWS "=" BWS word ]``."""
        start = self.pos
        self.skip_space()
        if not self.at("="):
            self.pos = start
            return None
        self.skip_space()
        return self.word(what)

    def error(self, expected: str) -> ApiError:
        found = repr(self.header[self.pos]) if not self.done() else "the end"
        return ApiError(
            400, "Invalid header value",
            f"the Prefer header is not valid (RFC 7240): {expected} at character {self.pos + 1}, found {found}, "
            f"in {self.header!r}; send e.g. 'Prefer: respond-async', or no Prefer header",
        )


def _preference(scanner: _Scanner) -> Preference:
    name = scanner.token("a preference name").lower()
    value = scanner.value(f"the value of {name!r}")
    params: dict[str, str | None] = {}
    while True:
        scanner.skip_space()
        if not scanner.at(";"):
            return Preference(name, value, params)
        scanner.skip_space()
        if scanner.done() or scanner.header[scanner.pos] in ";,":
            continue  # an empty parameter
        param = scanner.token(f"a parameter name of {name!r}").lower()
        param_value = scanner.value(f"the value of the parameter {param!r}")
        params.setdefault(param, param_value)


def parse_prefer(header: str | None) -> dict[str, Preference]:
    """The preferences of a ``Prefer`` header by name (the first of each); raises a 400 ApiError."""
    preferences: dict[str, Preference] = {}
    if header is None:
        return preferences
    scanner = _Scanner(header)
    while True:
        scanner.skip_space()
        if scanner.done():
            return preferences
        if scanner.at(","):
            continue  # an empty list element
        preference = _preference(scanner)
        preferences.setdefault(preference.name, preference)
        scanner.skip_space()
        if not scanner.done() and not scanner.at(","):
            raise scanner.error(f"expected ',' or ';' after the preference {preference.name!r}")
