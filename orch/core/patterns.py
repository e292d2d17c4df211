"""Regular expressions that arrive from the network, matched in time linear in the input.

Every pattern orch evaluates on behalf of someone else — filter terms (``-F fact=/re/``,
``-C /re/``, ``-I``, ``-A``), compound expressions, actionpolicy caller patterns, DDL
``validation`` patterns applied to request arguments — is compiled here, and only here, by
`RE2 <https://github.com/google/re2>`_ (the ``google-re2`` binding). Python's :mod:`re`
backtracks: ``^(.+)+X$`` against forty characters runs for longer than the universe has
existed, and one such ``orch find`` froze every daemon of a fleet (issue 18).

Why RE2 and not the ``regex`` module with ``timeout=``: measured in
``bench/test_bench_patterns.py`` (figures in ``bench/README.md``). RE2 matches in time
linear in the subject whatever the pattern, so a hostile filter costs what a friendly one
costs; rejects repetition counts over 1000 (``a{100000}{100000}``) and programs over
:data:`MAX_PROGRAM_BYTES` at compile time, in microseconds; and is as fast as :mod:`re`
on the patterns people write. A per-match timeout only caps the damage: each hostile term
still burns the whole timeout on every node for every request, and the caller chooses how
many terms and requests to send. The price of RE2 is syntax: no backreferences (``\\1``)
and no lookaround (``(?=``, ``(?!``, ``(?<=``), which a client now rejects as a usage error
naming the term. Everything the mco filter language is used with — anchors, classes,
alternation, ``{m,n}``, ``(?i)`` and the other inline flags, named groups, ``\\d \\w \\s
\\b`` — works as before.

Differences from :mod:`re` an operator may notice, all documented in ``docs/cli.md``:

* ``$`` means the end of the text (as in JSON Schema and Choria), not "before a final
  newline"; ``(?m)`` makes it the end of a line;
* ``\\d``, ``\\w`` and ``\\s`` are ASCII classes;
* ``\\Z`` (Python's "end of text") is read as RE2's ``\\z`` so patterns written for
  :mod:`re` keep their meaning.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

from orch.core.errors import OrchError

#: The engine's name, for messages and documentation.
ENGINE = "RE2"
#: The longest pattern compiled at all, whatever the caller's budget: a backstop.
MAX_PATTERN_LENGTH = 4096
#: RE2's memory budget for one compiled program (its DFA cache is bounded the same way).
MAX_PROGRAM_BYTES = 1 << 20
_CACHE_SIZE = 1024
#: Longer patterns are compiled on every use instead of cached: a sender choosing a
#: thousand distinct 4 KiB patterns would otherwise pin about 100 MB of programs per node.
#: Real filters are short and repeat, and the filter budget bounds the bytes to compile.
_CACHE_MAX_LENGTH = 256


class PatternError(OrchError):
    """A pattern the bounded engine cannot compile; the message says why."""


class Pattern(Protocol):
    """What orch uses of a compiled pattern (a subset of :class:`re.Pattern`)."""

    pattern: str

    def search(self, text: str) -> object | None: ...

    def fullmatch(self, text: str) -> object | None: ...


def is_slashed(text: str) -> bool:
    """True when ``text`` is written ``/regex/``, the mco spelling of a pattern."""
    return len(text) >= 2 and text[0] == "/" and text[-1] == "/"


def search(pattern: str, text: str) -> bool:
    """True when ``pattern`` is found in ``text``; raises :class:`PatternError` if invalid."""
    return compile_pattern(pattern).search(text) is not None


def compile_pattern(pattern: str) -> Pattern:
    """Compile ``pattern`` with the bounded engine, from a cache of recent patterns.

    Raises :class:`PatternError` (and nothing else) for a pattern that is too long, uses
    syntax RE2 lacks, repeats more than 1000 times or compiles to too large a program.
    """
    if not isinstance(pattern, str):
        raise PatternError(f"a pattern must be a string, got {type(pattern).__name__}")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"pattern longer than {MAX_PATTERN_LENGTH} characters")
    if len(pattern) > _CACHE_MAX_LENGTH:
        return _compile(pattern)
    return _compile_cached(pattern)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile_cached(pattern: str) -> Pattern:
    """The cached compile; failures are not cached, so each is reported every time."""
    return _compile(pattern)


def _compile(pattern: str) -> Pattern:
    from re2 import _re2

    try:
        compiled = _re2.RE2(_encode(_translate(pattern)), _options())
    except (TypeError, ValueError, OverflowError, MemoryError) as exc:
        raise PatternError(type(exc).__name__) from None
    if not compiled.ok():
        raise PatternError(_reason(compiled.error()))
    return _Compiled(pattern, compiled)


class _Compiled:
    """One RE2 program, searched through the binding's core object.

    ``google-re2``'s :mod:`re`-like wrapper builds a match object with every group's
    offsets translated back to characters; a filter only needs "found or not", and going
    straight to ``RE2.Match`` is ten times cheaper (``bench/test_bench_patterns.py``). The
    program is compiled with ``never_capture``, so no group is even recorded.
    """

    __slots__ = ("_match", "_search", "_whole", "pattern")

    def __init__(self, pattern: str, compiled: Any) -> None:
        from re2 import _re2

        self.pattern = pattern
        self._match = compiled.Match
        self._search = _re2.RE2.Anchor.UNANCHORED
        self._whole = _re2.RE2.Anchor.ANCHOR_BOTH

    def search(self, text: str) -> object | None:
        encoded = _encode(text)
        return True if self._match(self._search, encoded, 0, len(encoded))[0][0] >= 0 else None

    def fullmatch(self, text: str) -> object | None:
        encoded = _encode(text)
        return True if self._match(self._whole, encoded, 0, len(encoded))[0][0] >= 0 else None


def _encode(text: str) -> bytes:
    """UTF-8, keeping lone surrogates (JSON can carry ``"\\ud800"``) instead of failing:
    RE2 reads such bytes as invalid UTF-8, without error."""
    return text.encode("utf-8", "surrogatepass")


@functools.cache
def _options() -> Any:
    import re2

    options = re2.Options()
    options.max_mem = MAX_PROGRAM_BYTES
    options.log_errors = False  # errors are raised, not written to stderr by the C++ side
    options.never_capture = True  # "found or not" is all orch asks
    return options


def _reason(raw: bytes | str) -> str:
    """RE2's message as text, with a hint for the syntax it deliberately lacks."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if "invalid perl operator: (?=" in text or "invalid perl operator: (?!" in text \
            or "invalid perl operator: (?<=" in text or "invalid perl operator: (?<!" in text:
        return f"{text} (lookaround is not supported: {ENGINE} matches in linear time)"
    if text.startswith("invalid escape sequence: \\") and text[-1:].isdigit():
        return f"{text} (backreferences are not supported: {ENGINE} matches in linear time)"
    if text.startswith("invalid repetition size") or text.startswith("bad repetition"):
        return f"{text} (at most 1000 repetitions)"
    if "pattern too large" in text:
        return f"{text} (the compiled pattern exceeds {MAX_PROGRAM_BYTES} bytes)"
    return text


def _translate(pattern: str) -> str:
    r"""Rewrite Python-only escapes to their RE2 spelling: ``\Z`` becomes ``\z``.

    Escapes are skipped pairwise, so ``\\Z`` (a backslash and a Z) is left alone.
    """
    if "\\Z" not in pattern:
        return pattern
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            following = pattern[index + 1]
            out.append("\\z" if following == "Z" else char + following)
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)
