"""Lexicon sentiment for short customer-service messages, French and English; pure and offline.

``score(text, lang=None)`` returns a ``Sentiment``: a score in [-1, 1] and a
label (``negative`` <= -NEGATIVE_AT, ``positive`` >= POSITIVE_AT, else
``neutral``). Deterministic: no model, no network, no randomness; the
lexicon is ``pipeline/sentiment/lexicon.py``, shipped in the repository.

How a message is scored (VADER's approach, with a service-desk twist):

1. Normalize: lower case, accents folded (``reçu`` = ``recu``), typographic
   apostrophes made plain, English ``n't`` split off as ``not``; emoji and
   emoticons become tokens first. Words are split on anything that is not a
   letter or digit, so ``c'est`` is ``c est``; punctuation ends a clause,
   where negation and intensifiers stop.
2. Phrases first (longest match, up to 4 words): ``pas terrible``,
   ``ras le bol``, ``waste of time``, ``never again``.
3. Each sentiment word takes the weight of the intensifiers just before it
   (``tres``, ``really``: x1.4; ``un peu``, ``a bit``: x0.6).
4. Negation (``not``, ``never``, ``no``, ``ne``/``n``, ``pas``, ``jamais``,
   ``aucun``, ``sans``, ``still no``, ``toujours pas``) in the three tokens
   before a word, within its clause, flips it: a negated positive counts -0.75 of its weight, a
   negated negative +0.4 ("not bad" is faint praise). Service words that
   are neutral alone (``received``, ``refund``, ``answer``, ``recu``,
   ``rembourse``, ``reponse``) weigh -1.2 when negated: with any other sign
   of displeasure the message is negative ("colis jamais recu", "still no
   refund"), while a bare "I didn't get the confirmation email, is that
   normal?" stays neutral.
5. After ``but`` / ``mais`` / ``however`` / ``pourtant`` the rest of the
   message weighs 1.5, what came before 0.5: the customer's conclusion wins.
6. Exclamation marks (up to 3) and words in capitals strengthen the
   message's polarity a little.
7. The sum is squashed to [-1, 1] with ``x / sqrt(x^2 + 15)``.

Language: ``lang`` (``fr`` or ``en``, e.g. from the event's locale) picks
the lexicon unless the message's function words clearly say the other
language (a French shopper writing in English); without it the function
words decide, French on a tie. Accuracy on the labeled sets in
``tests/sentiment/data`` is measured by ``tests/sentiment/test_accuracy.py``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from pipeline.sentiment.lexicon import (
    BUT,
    EMOJI,
    FUNCTION_WORDS,
    INTENSIFIERS,
    LEXICON,
    NEGATING_PHRASES,
    NEGATORS,
    PHRASES,
    SERVICE_WORDS,
)

__all__ = ["Label", "Lang", "NEGATIVE_AT", "POSITIVE_AT", "Sentiment", "detect_lang", "lang_of_locale", "score"]

Label = Literal["negative", "neutral", "positive"]
Lang = Literal["fr", "en"]

NEGATIVE_AT = 0.3  # score <= -NEGATIVE_AT is negative
POSITIVE_AT = 0.25  # score >= POSITIVE_AT is positive
_ALPHA = 15.0  # squashing constant (VADER's)
_NEGATION_SCOPE = 3  # tokens after a negator that it flips
_NEGATED_POSITIVE = -0.75
_NEGATED_NEGATIVE = 0.4
_NEGATED_SERVICE = -1.2
_MAX_PHRASE = 4
_CLEAR_LEAD = 2  # function words by which the text overrides the locale's language
_BEFORE_BUT, _AFTER_BUT = 0.5, 1.5

_TOKEN = re.compile(r"[A-Za-z0-9_]+|[,.;:!?]")
_CLAUSE_ENDS = frozenset(",.;:!?")
CLAUSE = "|"  # token ending a clause: negation and intensifiers stop there
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


@dataclass(frozen=True, slots=True)
class Sentiment:
    score: float  # -1 (very negative) .. 1 (very positive)
    label: Label
    lang: Lang


def lang_of_locale(locale: str | None) -> Lang | None:
    """``fr`` for ``fr``/``fr-FR``/``fr_CA``..., ``en`` for English locales, else None."""
    if not locale:
        return None
    head = locale[:2].lower()
    return head if head in ("fr", "en") else None  # type: ignore[return-value]


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _tokens(text: str) -> tuple[list[str], list[bool]]:
    """Folded lower-case tokens and, per token, whether it was written in capitals."""
    for symbol, token in EMOJI.items():
        if symbol in text:
            text = text.replace(symbol, f" {token} ")
    text = _fold(text)
    text = re.sub(r"n't\b", " not", text, flags=re.IGNORECASE)
    text = re.sub(r"\bcan ?not\b", "can not", text, flags=re.IGNORECASE)
    tokens, shouted = [], []
    for match in _TOKEN.finditer(text):
        word = match.group()
        if word in _CLAUSE_ENDS:
            if tokens and tokens[-1] != CLAUSE:
                tokens.append(CLAUSE)
                shouted.append(False)
            continue
        tokens.append(word.lower())
        shouted.append(len(word) >= 3 and word.isupper() and word.isalpha())
    return tokens, shouted


def _function_word_lead(tokens: list[str]) -> int:
    """English function words minus French ones."""
    return sum(t in FUNCTION_WORDS["en"] for t in tokens) - sum(t in FUNCTION_WORDS["fr"] for t in tokens)


def detect_lang(text: str, hint: Lang | None = None) -> Lang:
    """``fr`` or ``en`` by counting each language's function words.

    ``hint`` (e.g. from the locale) decides unless the text leads the other
    way by ``_CLEAR_LEAD`` words or more: a French shopper may write in
    English. Without a hint, ties go to ``fr`` (the first market).
    """
    return _detect(_tokens(text)[0], hint)


def _detect(tokens: list[str], hint: Lang | None) -> Lang:
    lead = _function_word_lead(tokens)
    if hint is not None and abs(lead) < _CLEAR_LEAD:
        return hint
    return "en" if lead > 0 else "fr"


def _valence(tokens: list[str], shouted: list[bool], lang: Lang) -> float:
    lexicon, phrases, negating = LEXICON[lang], PHRASES[lang], NEGATING_PHRASES[lang]
    negators, intensifiers = NEGATORS[lang], INTENSIFIERS[lang]
    service, but_words = SERVICE_WORDS[lang], BUT[lang]
    parts: list[float] = []  # weights, in text order
    negated_until = -1
    boost = 1.0
    i, n = 0, len(tokens)
    but_at = None
    while i < n:
        # Longest phrase first: a phrase carries its own weight, negation included.
        matched = False
        for size in range(min(_MAX_PHRASE, n - i), 1, -1):
            phrase = " ".join(tokens[i : i + size])
            if phrase in negating:  # "still no", "toujours pas": negative themselves, and negating
                negated_until = i + size - 1 + _NEGATION_SCOPE
                parts.append(negating[phrase])
            elif phrase in phrases:
                parts.append(phrases[phrase] * boost)
                boost = 1.0
            else:
                continue
            i += size
            matched = True
            break
        if matched:
            continue
        token = tokens[i]
        if token == CLAUSE:
            negated_until = -1
            boost = 1.0
        elif token in but_words:
            but_at = len(parts)
            negated_until = -1
            boost = 1.0
        elif token in negators:
            negated_until = i + _NEGATION_SCOPE
            weight = negators[token]
            if weight:
                parts.append(weight)
        elif token in intensifiers:
            boost *= intensifiers[token]
        elif token in lexicon or token in service:
            weight = lexicon.get(token, 0.0) * boost * (1.25 if shouted[i] else 1.0)
            if i <= negated_until:
                if token in service:
                    weight = _NEGATED_SERVICE
                elif weight > 0:
                    weight *= _NEGATED_POSITIVE
                else:
                    weight *= _NEGATED_NEGATIVE
            if weight:
                parts.append(weight)
            boost = 1.0
        i += 1
    if but_at is not None and but_at < len(parts):
        return sum(w * (_BEFORE_BUT if k < but_at else _AFTER_BUT) for k, w in enumerate(parts))
    return sum(parts)


def score(text: str, lang: Lang | None = None) -> Sentiment:
    """Sentiment of one customer message; ``lang`` is a hint (see ``detect_lang``), None detects it."""
    tokens, shouted = _tokens(text)
    lang = _detect(tokens, lang)
    total = _valence(tokens, shouted, lang)
    if total:
        bangs = min(text.count("!"), 3)
        total += math.copysign(0.3 * bangs, total)
    value = round(total / math.sqrt(total * total + _ALPHA), 4)
    label: Label = "negative" if value <= -NEGATIVE_AT else "positive" if value >= POSITIVE_AT else "neutral"
    return Sentiment(value, label, lang)
