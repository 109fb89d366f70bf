"""The original tool's list syntax for command-line options, parsed without ``eval``.

The original turned ``-i [[a,b],[c]]`` into Python source and evaluated it. ptqdebug parses the
same strings with a small grammar::

    value := name | list
    list  := "[" [ value ("," value)* [","] ] "]"
    name  := 'quoted text' | "quoted text" | bare text up to , [ ] (trimmed)

(in quoted text, the quote doubled stands for itself: ``'it''s'``)

So ``[a,b]``, ``['a', 'b']``, ``[[a,b],[c]]`` and ``weight`` all work; a value that does not start
with ``[`` is a plain name, taken as it is (``features[0]``, ``a'b``, ``x,y``). Quotes let a name hold commas, brackets or spaces (``['a, b']``). The
shell removes quotes it sees, so ``-q ['weight','activation']`` reaches ptqdebug as
``[weight,activation]``, which means the same thing.
"""

from __future__ import annotations

from .errors import OptionError

__all__ = ["ListValue", "parse_list"]

ListValue = str | list["ListValue"]


def parse_list(text: str, what: str = "option") -> ListValue:
    """Parse a name or a (nested) list of names; malformed text is an :class:`OptionError`."""
    s = text.strip()
    if not s.startswith("["):
        if s.endswith("]") and "[" not in s:
            raise OptionError(f"{what}: {text!r} has a ']' without an opening '['; expected e.g. [a,b]")
        return s
    value, pos = _parse_value(s, 0, what, text)
    pos = _skip(s, pos)
    if pos != len(s):
        raise OptionError(f"{what}: unexpected {s[pos:]!r} after the list in {text!r}; expected one list like [a,b] or [[a,b],[c]]")
    return value


def _skip(s: str, i: int) -> int:
    while i < len(s) and s[i].isspace():
        i += 1
    return i


def _parse_value(s: str, i: int, what: str, text: str) -> tuple[ListValue, int]:
    i = _skip(s, i)
    if i >= len(s):
        raise OptionError(f"{what}: {text!r} ends too early; expected a name or a list")
    if s[i] == "[":
        items: list[ListValue] = []
        i = _skip(s, i + 1)
        if i < len(s) and s[i] == "]":
            return items, i + 1
        while True:
            item, i = _parse_value(s, i, what, text)
            items.append(item)
            i = _skip(s, i)
            if i >= len(s):
                raise OptionError(f"{what}: {text!r} has an unclosed '['; expected a matching ']'")
            if s[i] == ",":
                i = _skip(s, i + 1)
                if i >= len(s):
                    raise OptionError(f"{what}: {text!r} has an unclosed '['; expected a matching ']'")
                if s[i] == "]":
                    return items, i + 1
                continue
            if s[i] == "]":
                return items, i + 1
            raise OptionError(f"{what}: unexpected {s[i]!r} at position {i} of {text!r}; expected ',' or ']'")
    if s[i] in "'\"":
        quote, parts, start = s[i], [], i + 1
        while True:  # a doubled quote stands for one: 'it''s'
            end = s.find(quote, start)
            if end < 0:
                raise OptionError(f"{what}: {text!r} has an unclosed quote; expected a matching {quote}")
            parts.append(s[start:end])
            if not s.startswith(quote, end + 1):
                return quote.join(parts), end + 1
            start = end + 2
    j = i
    while j < len(s) and s[j] not in ",[]":
        j += 1
    name = s[i:j].strip()
    if not name:
        raise OptionError(f"{what}: empty name at position {i} of {text!r}; expected a name between commas")
    if "'" in name or '"' in name:
        name = name.replace("'", "").replace('"', "")
    return name, j
