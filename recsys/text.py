"""Sentence splitting that works offline: pure Python and regular expressions.

:func:`split_sentences` is what every engine indexes and every query is cut into,
so it favours *not* breaking a sentence over breaking one too many: a missed
boundary costs a slightly longer sentence, a false one produces fragments such as
"Fig." that match anything.

Rules, in order (a candidate boundary is ``.``, ``?``, ``!`` or an ellipsis, with
any closing quotes or brackets, followed by a space):

* Text without spaces is never cut inside: decimals (3.14, 0.5%), versions
  (v2.1.0), URLs, e-mail addresses and DOIs stay whole.
* A candidate followed by a lowercase letter is not a boundary ("et al. showed"),
  unless that word is a list marker such as "b." or "iv.".
* ``?`` and ``!`` end a sentence; an ellipsis ends one only before a capital letter.
* After a period, the word before it decides:

  - abbreviations that introduce something ("e.g.", "i.e.", "cf.", "vs.", "approx.",
    "Dr.", "Prof.", "Mr.") never end a sentence;
  - reference words ("Fig.", "Figs.", "Eq.", "Sec.", "Tab.", "No.", "p.") do not end
    one before a number or a bracket ("Fig. 3", "Eq. (5)"); "no."/"p." end one
    otherwise ("the answer was no. The");
  - "etc.", "et al." and "resp." end a sentence before any capitalised word;
  - initials ("J. R. R. Tolkien", "A. Smith") and dotted acronyms ("U.S.", "Ph.D.",
    "i.i.d.") end a sentence only before a common sentence opener (The, We, This,
    However, ...). So "...in the U.S. The next..." is split, while "U.S. Congress"
    and "A. Smith" are not. The known miss: an acronym or initial that ends a
    sentence whose successor starts with a name ("...in the U.S. Researchers...")
    stays one sentence. A capital letter after a number is a unit ("3.4 K."), which
    ends a sentence like any word;
  - a list marker ("1.", "a.", "iv.") at the start of a sentence or after ":"/";"
    is not a boundary ("Steps: 1. Collect data. 2. Train.");
  - any other word ends the sentence.

* Line breaks: a blank line always ends a sentence; a line that looks like a
  heading (short, capitalised, no final punctuation, preceded by a finished
  sentence) is a sentence of its own; a bulleted or numbered line starts a new
  sentence. Other line breaks are plain spaces (hard-wrapped text).
* A "sentence" longer than :data:`MAX_SENTENCE_CHARS` (a table dump, a blob without
  punctuation) is cut at spaces into chunks of at most that length, or mid-word
  when a single word is longer.

Whitespace inside each sentence is collapsed to single spaces; no non-whitespace
character is ever dropped, and no empty sentence is returned.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["MAX_SENTENCE_CHARS", "split_sentences"]

#: Longest sentence returned, in characters; longer runs are cut at spaces.
MAX_SENTENCE_CHARS = 1000

# A candidate boundary: terminal punctuation, optional closing quotes/brackets, then a space.
_CANDIDATE = re.compile(r"[.!?…]+[\"'”’»)\]}]*(?= )")
_OPENERS = "\"'“‘«([{"

# Never end a sentence (they introduce what follows); compared in lowercase.
_NEVER_END = frozenset("e.g eg i.e ie cf vs viz approx ca incl esp w.r.t wrt a.k.a".split())
# Titles before a name; compared as written, so that "5 ms." (milliseconds) still ends one.
_TITLES = frozenset(
    """Dr Prof Mr Mrs Ms Mx Sr St Gen Col Capt Lt Sgt Rev Hon Gov Sen Pres Mt DR PROF MR MRS MS""".split()
)
# Introduce a number or a bracket: "Fig. 3", "Eq. (5)", "Sec. IV".
_REFERENCE = frozenset(
    """fig figs eq eqs eqn eqns sec secs sect tab tabs tbl ch chap vol vols ref refs thm lem
    lemma prop def cor alg app appx suppl ex exp avg std est jan feb mar apr jun jul aug sep sept
    oct nov dec""".split()
)
# As _REFERENCE, but also ordinary words: only a digit after them keeps the sentence going.
_NUMBERED = frozenset("no nos nr p pp art para".split())
# Often end a sentence: a capitalised word after them starts a new one.
_ENDERS = frozenset("etc al resp ibid".split())
# Company and degree suffixes, treated like acronyms (split before a sentence opener).
_SUFFIXES = frozenset("inc ltd co corp jr bros".split())

# Words that commonly open a sentence, used to decide after initials and acronyms.
# Single letters ("A", "I") are left out: they are initials too often.
_OPENERS_WORDS = frozenset(
    """The This These That Those There Their They Then Thus Therefore Hence Here However
    Moreover Furthermore Further Finally Additionally Also Although Though While When Where
    Whereas What Which Who How Why If In On At For From To With Without By As Of An And But
    Or Nor So Yet We Our Us It Its Such Both Each Every All Most Many Some Several Few
    Other Another Since Because After Before During Using Based Given Unlike Despite
    Overall Recent Recently Existing Previous Previously Prior Current Currently Second
    Third First Lastly Last Similarly Nevertheless Nonetheless Meanwhile Consequently
    Specifically Notably Importantly Indeed Instead Accordingly Among Across Compared
    Experiments Results Code One Two Three You He She His Her My Not Only No Nothing
    Today Now Still Again Later Next Please See Let Extensive Experimental Empirical
    Empirically Evaluation Evaluations Theoretical Theoretically Numerical Simulations
    Comprehensive Through Together Building Leveraging Motivated Inspired Beyond Within
    Under Over Applying Combined Taken Finally Ultimately Even Because Unfortunately
    Fortunately Surprisingly Interestingly Collectively Altogether Whether""".split()
)

_LOWER_MARKER = re.compile(r"(?:[a-h]|[ivx]{1,4})\.")  # "b." or "iv." opening a list item
_LIST_MARKER = re.compile(r"(?:\d{1,2}|[A-Za-z]|[ivxIVX]{2,4})")
_DOTTED = re.compile(r"[A-Za-z]{1,2}(?:\.[A-Za-z]{1,2})+")
_INITIAL = re.compile(r"[A-Z]")

# Line-level rules (used only when the text has line breaks).
_BULLET = re.compile(r"(?:[-*•‣◦–]|\d{1,3}[.)]|\(?[A-Za-z0-9]{1,3}\))\s")
_LINE_END_FINISHED = re.compile(r"[.!?:;…][\"'”’»)\]}]*$")
_HEADING_END_BLOCKERS = tuple(",;-–—/&(+=")
_HEADING_MAX_WORDS = 12
_CONTINUATION_WORDS = frozenset(
    """a an the of by and or in on at to for from with as is are was were be been that
    which who et its their our this these than into onto via per vs""".split()
)


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences.

    Whitespace is normalised (runs of whitespace become one space, ends trimmed),
    empty sentences are dropped, and no sentence is longer than
    :data:`MAX_SENTENCE_CHARS`. See the module docstring for the rules.
    """
    sentences: list[str] = []
    for block in _blocks(text):
        normalised = " ".join(block.split())
        for sentence in _split_normalised(normalised):
            if len(sentence) <= MAX_SENTENCE_CHARS:
                sentences.append(sentence)
            else:
                sentences.extend(_chunks(sentence, MAX_SENTENCE_CHARS))
    return sentences


def _split_normalised(text: str) -> Iterator[str]:
    """Split one block whose whitespace is already single spaces."""
    start = 0
    for match in _CANDIDATE.finditer(text):
        end = match.end()
        if _is_boundary(text, start, match.start(), match.group(), end + 1):
            sentence = text[start:end].strip()
            if sentence:
                yield sentence
            start = end + 1
    rest = text[start:].strip()
    if rest:
        yield rest


def _is_boundary(text: str, sentence_start: int, punct_start: int, punct: str, next_start: int) -> bool:
    """Whether the candidate ``punct`` at ``punct_start`` ends the sentence."""
    following = _next_word(text, next_start)
    if not following or (following[0].islower() and not _LOWER_MARKER.fullmatch(following)):
        return False
    terminal = punct.rstrip("\"'”’»)]}")
    if "?" in terminal or "!" in terminal:
        return not following[0].isdigit()  # "CheckThat! 2025" names a thing
    space = text.rfind(" ", sentence_start, punct_start)
    word_start = sentence_start if space < 0 else space + 1
    word = text[word_start:punct_start].lstrip(_OPENERS)
    if terminal != ".":  # an ellipsis ends a sentence only before a capital, never alone ("[...]")
        return bool(word) and following.lstrip(_OPENERS)[:1].isupper()
    if not word:
        return True
    return _period_ends_sentence(word, following, text[sentence_start:word_start])


def _period_ends_sentence(word: str, following: str, before: str) -> bool:
    """Decide a period after ``word``; ``following`` is the next word, ``before`` the
    text of the sentence before ``word``."""
    key = word.lower()
    if key in _NEVER_END or word in _TITLES:
        return False
    first = following[0]
    if key in _REFERENCE:
        return first.isalpha() and following.rstrip(".,;:") in _OPENERS_WORDS
    if key in _NUMBERED:
        return not (first.isdigit() or first in "([#")
    if key in _ENDERS:
        return following.lstrip(_OPENERS)[:1].isupper()
    stripped_before = before.rstrip()
    if _LIST_MARKER.fullmatch(word) and (not stripped_before or stripped_before[-1] in ":;"):
        return False  # "1. Collect data" at the start of a sentence or list
    if first.isdigit() and word[-1].isdigit():
        return False  # "by 8. 24%": a broken decimal far more often than a new sentence
    if _INITIAL.fullmatch(word) and stripped_before[-1:].isdigit():
        return True  # a unit after a number ("3.4 K."), not an initial
    if _INITIAL.fullmatch(word) or _DOTTED.fullmatch(word) or key in _SUFFIXES:
        return following.rstrip(".,;:") in _OPENERS_WORDS
    return True


def _next_word(text: str, start: int) -> str:
    end = text.find(" ", start)
    return text[start:] if end < 0 else text[start:end]


def _chunks(sentence: str, limit: int) -> Iterator[str]:
    """Cut an over-long sentence at spaces into pieces of at most ``limit`` chars,
    of about equal length (no tiny tail)."""
    while len(sentence) > limit:
        pieces = -(-len(sentence) // limit)
        target = -(-len(sentence) // pieces)
        cut = sentence.rfind(" ", 0, target + 1)
        if cut <= target // 2:
            cut = sentence.rfind(" ", 0, limit + 1)
        if cut <= 0:  # one word longer than the limit: cut inside it
            yield sentence[:target]
            sentence = sentence[target:]
        else:
            yield sentence[:cut]
            sentence = sentence[cut + 1 :]
    if sentence:
        yield sentence


def _blocks(text: str) -> Iterator[str]:
    """Cut text at line breaks that end a sentence (see the module docstring).

    Text without line breaks is one block (the fast path for normalised corpora).
    """
    lines = text.splitlines()
    if len(lines) <= 1:
        yield text
        return
    block: list[str] = []
    block_is_item = False
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line:  # a blank line: paragraph break
            if block:
                yield " ".join(block)
            block, block_is_item = [], False
            continue
        previous_finished = not block or _LINE_END_FINISHED.search(block[-1]) is not None
        if _BULLET.match(line + " ") and (previous_finished or block_is_item) and block:
            yield " ".join(block)
            block = []
        if not block:
            block_is_item = _BULLET.match(line + " ") is not None
        block.append(line)
        if previous_finished and _is_heading(line, _next_line(lines, index + 1)):
            yield " ".join(block)
            block, block_is_item = [], False
    if block:
        yield " ".join(block)


def _next_line(lines: list[str], start: int) -> str:
    for line in lines[start:]:
        if line.strip():
            return line.strip()
    return ""


def _is_heading(line: str, following: str) -> bool:
    """A short capitalised line without final punctuation, followed by a line that
    does not continue it in lowercase."""
    if not following or following[0].islower():
        return False
    first = line[0]
    if not (first.isupper() or first.isdigit() or first == "#"):
        return False
    if _LINE_END_FINISHED.search(line) or line.endswith(_HEADING_END_BLOCKERS):
        return False
    words = line.split()
    return len(words) <= _HEADING_MAX_WORDS and words[-1].lower() not in _CONTINUATION_WORDS
