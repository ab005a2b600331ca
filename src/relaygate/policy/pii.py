"""Offline PII detection on prompt text: which entity *types* occur (never the values).

Why not Presidio itself: ``presidio-analyzer`` (2.2.366) imports spaCy, thinc and numpy even when
only its pattern recognizers are used (~1.5 s import, ~400 MB installed), its email recognizer
validates TLDs through ``tldextract``, which fetches the Public Suffix List over the network, and
its phone recognizer (``phonenumbers.PhoneNumberMatcher`` over the whole text for 8 regions)
takes 11-20 ms on a 2 KB prompt. So this module keeps Presidio's approach - candidate regexes,
then a checksum or structural validator - with the candidate patterns adapted from Presidio's
predefined recognizers (MIT; ``presidio_analyzer/predefined_recognizers/generic/*.py``,
``country_specific/us/us_ssn_recognizer.py``) and validation delegated to maintained libraries:
``python-stdnum`` (Luhn, IBAN ISO 13616 mod-97 + per-country format, US SSN rules, CN resident
ID checksum + birth date) and ``phonenumbers`` (Google libphonenumber metadata).

Entity types (Presidio's names): ``EMAIL_ADDRESS``, ``PHONE_NUMBER``, ``CREDIT_CARD`` (Luhn),
``IBAN_CODE``, ``IP_ADDRESS``, ``US_SSN``, ``CN_RIC``. Not detected: names, postal addresses,
free-text dates of birth (they need an NER model, which cannot be downloaded here).

Cost: ~0.1-0.5 ms for 2 KB of text (``bench/pii.py``); the first call imports the validators
(~0.1 s), so call ``warm_up()`` at start-up.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["ENTITY_TYPES", "PHONE_REGIONS", "detect_pii", "messages_text", "warm_up"]

ENTITY_TYPES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN", "CN_RIC")
# Regions tried for numbers written without a country code (Presidio tries US, UK, DE, IL, IN, CA, BR).
PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "CN", "IN", "JP")
# At most this many phone-shaped candidates are parsed per text: bounds the worst case (a table of
# numbers) at a few ms. Candidates with a leading "+" are checked first.
_MAX_PHONE_CHECKS = 24

_EMAIL = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])[\w!#$%&'*+/=?^`{|}~-](?:[\w.!#$%&'*+/=?^`{|}~-]{0,62}[\w!#$%&'*+/=?^`{|}~-])?"
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})(?![A-Za-z0-9-])"
)
_CARD = re.compile(
    r"(?<![0-9])(?!1[0-9]{12}(?![0-9]))(?:4[0-9]{3}|5[0-5][0-9]{2}|2[2-7][0-9]{2}|6[0-9]{3}|1[0-9]{3}|3[0-9]{3})"
    r"[- ]?[0-9]{3,4}[- ]?[0-9]{3,4}[- ]?[0-9]{3,5}(?![0-9])"
)
_IBAN = re.compile(r"(?<![A-Z0-9])[A-Z]{2}[0-9]{2}(?:[ -]?[A-Z0-9]){11,30}(?![A-Z0-9])")
_IPV4 = re.compile(
    r"(?<![0-9.])(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?!\.?[0-9])"
)
_IPV6 = re.compile(r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Za-z:])")
_SSN = re.compile(r"(?<![0-9])[0-9]{3}([- .])[0-9]{2}\1[0-9]{4}(?![0-9])")
_CN_RIC = re.compile(r"(?<![0-9A-Za-z])[1-9][0-9]{16}[0-9Xx](?![0-9A-Za-z])")
_PHONE = re.compile(r"(?<![0-9A-Za-z+])(?:\+|\(?)[0-9][0-9 ().\-/]{5,22}[0-9](?![0-9])")
_THOUSANDS = re.compile(r"^[0-9]{1,3}(?:[ ,.'][0-9]{3})+$")
_DATE = re.compile(r"^[0-9]{1,4}[-/. ][0-9]{1,2}[-/. ][0-9]{1,4}$")
_CN_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
_DECIMAL = re.compile(r"^[0-9]+[.,][0-9]+$")
_YEARS = re.compile(r"^(?:19|20)[0-9]{2} ?[-/] ?(?:19|20)[0-9]{2}$")
_NON_DIGIT = re.compile(r"[^0-9]")
_DIGIT = re.compile(r"[0-9]")


def detect_pii(text: str, *, phone_regions: Sequence[str] = PHONE_REGIONS) -> frozenset[str]:
    """Return the PII entity types found in ``text`` (a subset of ``ENTITY_TYPES``).

    Pure and offline. Full-width forms (common in CJK text) are NFKC-normalized first. Each
    candidate is validated (checksum, number plan, address parser) so that, e.g., a 16-digit
    number failing Luhn is not a credit card. Stops checking a type once it has been found.
    """
    if not text:
        return frozenset()
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    found: set[str] = set()
    if "@" in text and _EMAIL.search(text):
        found.add("EMAIL_ADDRESS")
    if _DIGIT.search(text):
        _numeric(text, found, phone_regions)
    if ":" in text and _first(_IPV6.finditer(text), _valid_ipv6):
        found.add("IP_ADDRESS")
    return frozenset(found)


def messages_text(messages: Iterable[Mapping[str, Any]]) -> str:
    """Concatenate the text of an OpenAI chat ``messages`` list, one part per line.

    Takes ``content`` strings, ``{"type": "text" | "input_text", "text": ...}`` parts and tool-call
    ``function.arguments`` (JSON strings often carry the user's data). Images/audio are skipped.
    """
    parts: list[str] = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and part.get("type") in ("text", "input_text"):
                    text = part.get("text")
                    if isinstance(text, str):
                        parts.append(text)
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, Mapping) else None
            args = fn.get("arguments") if isinstance(fn, Mapping) else None
            if isinstance(args, str):
                parts.append(args)
    return "\n".join(parts)


def warm_up() -> None:
    """Import the validators and load their data once, so the first request pays nothing extra."""
    detect_pii("a@b.cc +1 415 555 0132 030 1234567 4111 1111 1111 1111 DE89 3704 0044 0532 0130 00")
    detect_pii("078-05-1120 11010519491231002X 10.1.2.3 2001:db8::1")


def _numeric(text: str, found: set[str], phone_regions: Sequence[str]) -> None:
    if _first(_CARD.finditer(text), _valid_card):
        found.add("CREDIT_CARD")
    if _first(_IBAN.finditer(text), _valid_iban):
        found.add("IBAN_CODE")
    if "." in text and any(
        _valid_ip(m.group(0)) and not _is_version(text, m.start()) for m in _IPV4.finditer(text)
    ):
        found.add("IP_ADDRESS")
    if _first(_SSN.finditer(text), _valid_ssn):
        found.add("US_SSN")
    if _first(_CN_RIC.finditer(text), _valid_cn_ric):
        found.add("CN_RIC")
    if _has_phone(text, phone_regions):
        found.add("PHONE_NUMBER")


def _first(matches: Iterable[re.Match[str]], valid: Any) -> bool:
    return any(valid(m.group(0)) for m in matches)


def _valid_card(s: str) -> bool:
    from stdnum import luhn

    digits = _NON_DIGIT.sub("", s)
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn.is_valid(digits)


def _valid_iban(s: str) -> bool:
    """Try the longest prefix first: the candidate regex may run into a following word or number."""
    from stdnum import iban

    compact = s.replace(" ", "").replace("-", "")
    for end in range(len(compact), 14, -1):
        head = compact[:end]
        # ISO 7064 mod 97-10 pre-check (cheap) before the library's per-country format check.
        digits = "".join(str(int(c, 36)) for c in head[4:] + head[:4])
        if int(digits) % 97 == 1 and iban.is_valid(head):
            return True
    return False


def _valid_ip(s: str) -> bool:
    addr = ipaddress.ip_address(s)
    return not (addr.is_loopback or addr.is_unspecified)


def _is_version(text: str, start: int) -> bool:
    """``v1.2.3.4`` / ``version 1.2.3.4`` are version numbers, not addresses."""
    before = text[max(0, start - 9) : start].lower().rstrip()
    return before.endswith(("v", "version", "ver.", "release"))


def _valid_ipv6(s: str) -> bool:
    try:
        return _valid_ip(str(ipaddress.IPv6Address(s)))
    except ValueError:
        return False


def _valid_ssn(s: str) -> bool:
    from stdnum.us import ssn

    return bool(ssn.is_valid(_NON_DIGIT.sub("", s)))


def _valid_cn_ric(s: str) -> bool:
    from stdnum.cn import ric

    return bool(ric.is_valid(s.upper()))


def _has_phone(text: str, regions: Sequence[str]) -> bool:
    """Parse phone-shaped candidates with libphonenumber: ``+`` numbers first, then national ones.

    A national number starting with the trunk prefix ``0`` is tried for the regions that dial
    ``0`` nationally (GB, DE, FR, CN, JP, IN...); one without it only for the others (US/NANP)
    and as a CN mobile. This keeps years, ranges and amounts from parsing as, e.g., German numbers.
    """
    import phonenumbers

    intl: list[str] = []
    national: list[str] = []
    for cand in dict.fromkeys(m.group(0).strip(" .-/") for m in _PHONE.finditer(text)):  # dedupe, keep order
        if cand.startswith("+"):
            intl.append(cand)
        elif _national_shape(cand):
            national.append(cand)
    checks = 0
    for cand in intl:
        # The candidate may run into a following number: drop trailing groups until it parses.
        groups = cand.split()
        for n in range(len(groups), 0, -1):
            checks += 1
            if _is_valid_number(phonenumbers, " ".join(groups[:n]), None):
                return True
            if checks >= _MAX_PHONE_CHECKS or n <= 2:
                break
    if not national:
        return False
    zero = tuple(r for r in regions if phonenumbers.ndd_prefix_for_region(r, True) == "0")
    other = tuple(r for r in regions if r not in zero)
    for cand in national:
        if _CN_MOBILE.match(cand):
            tried: Sequence[str] = ("CN",)
        else:
            tried = zero if cand.lstrip("(").startswith("0") else other
        for region in tried:
            checks += 1
            if _is_valid_number(phonenumbers, cand, region):
                return True
        if checks >= _MAX_PHONE_CHECKS:
            return False
    return False


def _national_shape(cand: str) -> bool:
    """Numbers without ``+`` must look like a phone: 7-13 digits, grouped or parenthesized, a
    trunk ``0``, or a CN mobile; amounts, decimals, dates and dotted quads are not phones."""
    ndigits = len(_NON_DIGIT.sub("", cand))
    if not 7 <= ndigits <= 13 or cand.count(".") >= 3:
        return False
    if _THOUSANDS.match(cand) or _DATE.match(cand) or _DECIMAL.match(cand) or _YEARS.match(cand):
        return False
    return bool(_CN_MOBILE.match(cand)) or cand[0] in "(0" or any(c in cand for c in " -./()")


def _is_valid_number(phonenumbers: Any, cand: str, region: str | None) -> bool:
    try:
        number = phonenumbers.parse(cand, region)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(number))
