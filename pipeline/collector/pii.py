"""The collector's one personal-data scrubber: every event passes it before Kafka (pure).

Rules (docs/privacy.md states them for users):

- A key that matches a configured pattern (``CX_PII_KEYS``, default
  ``email,phone,ip,address``; case ignored) at any depth of ``properties``
  and ``traits`` is renamed ``<key>_hash`` (a key that is a pattern in
  another case, ``Email``, becomes ``email_hash``) and its value replaced by the
  salted hash ``hash_pii`` (sha256 hex of salt + the stripped, lower-cased
  text). A container under such a key keeps its shape with every scalar
  inside hashed; a null or empty value is dropped. A key already ending in
  ``_hash`` keeps its name, its value is hashed all the same (a client's
  "hash" is not trusted to be one).
- A pattern of four letters or more matches anywhere in the key
  (``customerEmail``, ``billing_address``, ``phoneNumber``); a shorter one
  (``ip``) only as a word of it (``ip``, ``client_ip``, ``clientIp``,
  ``ipv4``, ``ips``), or ``shipping``, ``zip`` and ``tip`` would be hashed.
- Every other string, at any depth, and the page URL, referrer and path,
  is searched for things that look like an email address (``@`` or
  ``%40``) or a phone number (international ``+`` form, or national forms
  with separators, or a 10-digit number starting with 0), each replaced by
  ``email_hash:<hex>`` / ``phone_hash:<hex>``; a URL query parameter whose
  name matches a pattern (``?email=...``) has its value replaced by the
  hash.
- Nesting deeper than ``MAX_DEPTH`` is refused (``TooDeep``): the caller
  makes it a dead letter, nothing is stored half-scrubbed.

Hashes are deterministic (same value and salt, same hash), so joins on
them still work: an email hashed in ``traits.email`` and the same address
found in a URL give the same hex. Phones found in text are hashed on their
digits (and leading ``+``), so ``06 12 34 56 78`` and ``0612345678`` agree.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import orjson

__all__ = ["MAX_DEPTH", "Scrubber", "TooDeep", "hash_pii"]

# Deepest nesting of objects and arrays the collector scrubs (and accepts).
MAX_DEPTH = 64
# Strings remembered as free of personal data (``Scrubber.text``): at most this many, of at
# most CLEAN_TEXT_CHARS characters each (about 20 MB at worst, 4 bytes a character).
CLEAN_TEXTS_MAX = 20_000
CLEAN_TEXT_CHARS = 256

_HASH_SUFFIX = "_hash"
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_SEP = r"(?:[ .\-]|%20)"
_PHONE = re.compile(
    r"(?<![\w@/.+%-])(?:"
    r"(?:\+|%2[Bb])\d{1,3}(?:" + _SEP + r"?\(?\d{1,4}\)?){2,6}"  # +33 6 12 34 56 78, +1 (415) 555-0100
    r"|\(\d{2,4}\)" + _SEP + r"?\d{3,4}" + _SEP + r"\d{3,4}"  # (415) 555-0100
    r"|\d{2,4}" + _SEP + r"\d{2,4}(?:" + _SEP + r"\d{2,4}){1,3}"  # 415-555-0100, 06 12 34 56 78
    r"|0[1-9]\d{8}"  # 0612345678
    r")(?![\w@/-])"
)
# Nine digits, few characters apart: maybe a phone (written as one digit, then
# eight of "up to 3 non-digits and a digit": the same strings as
# ``(?:\d\D{0,3}){8}\d``, found in half the time).
_NINE_DIGITS = re.compile(r"\d(?:\D{0,3}\d){8}")
_ASCII_DIGITS = b"0123456789"
_DATE = re.compile(r"(?:19|20)\d\d[ ./-](?:0?[1-9]|1[0-2])[ ./-]\d\d")
_QUERY_PARAM = re.compile(r"([?&;])([^=&#;?]+)=([^&#;]*)")
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_SHORT_WORD = "{}(?:s|v[46]?)?"  # ipv4 splits as "ipv", "4"


def _may_hold_phone(text: str) -> bool:
    """Whether ``text`` has nine digits few characters apart (``_NINE_DIGITS``), the condition for a phone search.

    Most strings hold fewer than nine digits. For ASCII text that is counted
    in C (its digits deleted from its bytes) instead of searched for with the
    pattern, which costs about a microsecond per string; other text (where
    ``\\d`` also matches other scripts' digits) is searched.
    """
    if text.isascii():
        data = text.encode("ascii")
        if len(data) - len(data.translate(None, _ASCII_DIGITS)) < 9:
            return False
    return _NINE_DIGITS.search(text) is not None


class TooDeep(ValueError):
    """A value nested deeper than ``MAX_DEPTH``."""

    def __init__(self) -> None:
        super().__init__(f"nested deeper than {MAX_DEPTH} levels")


def hash_pii(value: object, salt: str) -> str:
    """Salted sha256 hex of a personal value, stripped and lower-cased first."""
    return hashlib.sha256((salt + str(value).strip().lower()).encode("utf-8", "surrogatepass")).hexdigest()


class Scrubber:
    """Hashes personal data in event values by key pattern and by the shape of the text."""

    def __init__(self, salt: str, patterns: tuple[str, ...]) -> None:
        self.salt = salt
        self.patterns = patterns
        self._long = tuple(p for p in patterns if len(p) >= 4)
        self._short = tuple(re.compile(_SHORT_WORD.format(re.escape(p))) for p in patterns if len(p) < 4)
        self.matches = lru_cache(maxsize=4096)(self._matches)
        # Short strings the text rules left unchanged: shop traffic repeats its
        # page URLs, titles and product names, and a set lookup is cheaper than
        # the rules. Only text without personal data is kept, at most
        # CLEAN_TEXTS_MAX strings (the set starts again empty when full).
        self._clean: set[str] = set()

    def _matches(self, key: str) -> bool:
        """Whether ``key`` names personal data (a pattern in it, or a short pattern as one of its words)."""
        lower = key.lower()
        if any(p in lower for p in self._long):
            return True
        if self._short:
            for word in _WORDS.findall(key):
                word = word.lower()
                if any(p.fullmatch(word) for p in self._short):
                    return True
        return False

    def hash(self, value: object) -> str:
        return hash_pii(value, self.salt)

    def text(self, text: str) -> str:
        """``text`` with emails, phone numbers and personal query parameters replaced by hashes."""
        clean = self._clean
        if text in clean:
            return text
        out = text
        if "=" in out:
            out = _QUERY_PARAM.sub(self._param, out)
        if "@" in out or "%40" in out:
            out = _EMAIL.sub(self._email, out)
        if _may_hold_phone(out):
            out = _PHONE.sub(self._phone, out)
        if out == text and len(text) <= CLEAN_TEXT_CHARS:
            if len(clean) >= CLEAN_TEXTS_MAX:
                clean.clear()
            clean.add(text)
        return out

    def _param(self, m: re.Match) -> str:
        value = m.group(3)
        if not value or not self.matches(m.group(2)):
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}={self.hash(value.replace('%40', '@'))}"

    def _email(self, m: re.Match) -> str:
        found = m.group(0)
        return "email_hash:" + self.hash(found.replace("%40", "@").replace("%2B", "+").replace("%2b", "+"))

    def _phone(self, m: re.Match) -> str:
        found = m.group(0)
        if _DATE.match(found):
            return found
        plus = found.startswith(("+", "%2B", "%2b"))
        digits = "".join(ch for ch in found.replace("%20", " ").replace("%2B", "").replace("%2b", "") if ch.isdigit())
        if not 9 <= len(digits) <= 15:
            return found
        return "phone_hash:" + self.hash(("+" if plus else "") + digits)

    def value(self, value: object, depth: int = 0) -> object:
        """A scrubbed copy of a decoded JSON value (the value itself when nothing changes)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                raise TooDeep()
            return self._object(value, depth + 1)
        if isinstance(value, list):
            if depth >= MAX_DEPTH:
                raise TooDeep()
            return [self.value(v, depth + 1) for v in value]
        return value

    def _object(self, obj: dict, depth: int) -> dict:
        out: dict = {}
        derived: dict = {}  # <key>_hash made from <key>: wins over a sent <key>_hash
        matches, clean = self.matches, self._clean
        for key, v in obj.items():
            if not isinstance(key, str) or not matches(key):
                # self.value(v, depth), with its commonest cases inline (this loop runs for every property)
                if isinstance(v, str):
                    out[key] = v if v in clean else self.text(v)
                elif isinstance(v, (dict, list)):
                    out[key] = self.value(v, depth)
                else:
                    out[key] = v
                continue
            if v is None or v == "":
                continue
            hashed = self._hash_all(v, depth)
            lower = key.lower()
            if lower.endswith(_HASH_SUFFIX):
                out[key] = hashed
            else:  # "Email" -> "email_hash", as the sinks read it; "customerEmail" -> "customerEmail_hash"
                derived[(lower if lower in self.patterns else key) + _HASH_SUFFIX] = hashed
        if derived:
            out.update(derived)
        return out

    def _hash_all(self, value: object, depth: int) -> object:
        """Every scalar inside ``value`` hashed; nulls kept, shape kept."""
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                raise TooDeep()
            return {k: self._hash_all(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            if depth >= MAX_DEPTH:
                raise TooDeep()
            return [self._hash_all(v, depth + 1) for v in value]
        if value is None:
            return None
        return self.hash(value)

    def payload(self, raw: bytes | str) -> str:
        """A dead letter's payload, scrubbed: the JSON scrubbed as events are, else the text's emails and phones.

        What cannot be parsed (a body that is not JSON, a truncated prefix,
        nesting past ``MAX_DEPTH``) is scrubbed as text: emails and phone
        numbers, and the string value of any ``"key": "value"`` pair whose
        key matches a pattern.
        """
        text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None
        else:
            try:
                return orjson.dumps(self.value(parsed)).decode()
            except TooDeep:
                pass
        text = _JSON_MEMBER.sub(self._member, text)
        return self.text(text)

    def _member(self, m: re.Match) -> str:
        key = m.group(1)
        if not self.matches(key):
            return m.group(0)
        name = key if key.lower().endswith(_HASH_SUFFIX) else key + _HASH_SUFFIX
        return f'"{name}":"{self.hash(m.group(2))}"'


# A "key": "string" member in JSON text (no escaped quotes in the value).
_JSON_MEMBER = re.compile(r'"([^"\\]{1,128})"\s*:\s*"([^"\\]*)"')
