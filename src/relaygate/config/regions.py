"""Region codes: the one validator for every place a region is written (tenants, keys, cutoffs,
provider jurisdictions, policy matches), so a typo such as ``Europe`` or ``XX`` is an error, not a
rule or cutoff that silently never matches.

A region is an officially assigned ISO 3166-1 alpha-2 code or a group (``EU``, ``EEA``).
"""

from __future__ import annotations

__all__ = ["ALL_REGIONS", "ISO_3166_ALPHA2", "REGION_GROUPS", "check_cutoff_region", "check_region"]

# The 249 officially assigned ISO 3166-1 alpha-2 codes (ISO 3166 Maintenance Agency,
# https://www.iso.org/obp/ui/#search), as shipped in Debian's iso-codes 4.15.0
# (/usr/share/iso-codes/json/iso_3166-1.json). A fixed list on purpose: the pattern [A-Z]{2}
# would let "XX" through. phonenumbers.SUPPORTED_REGIONS is not a substitute: it lacks AQ, BV,
# GS, HM, PN, TF, UM and adds AC, TA, XK.
ISO_3166_ALPHA2: frozenset[str] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
    EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
    HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
    LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
    NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
    """.split()
)
REGION_GROUPS: frozenset[str] = frozenset({"EU", "EEA"})
# Cutoffs only: the target covering every region.
ALL_REGIONS = "*"
# Codes people write for a country whose ISO code differs (UK and EL are "exceptionally reserved").
_HINTS = {"UK": "GB", "EL": "GR", "USA": "US", "GER": "DE", "CHN": "CN"}


def check_region(v: str | None) -> str | None:
    """``" de "`` -> ``"DE"``; None stays None. Raises ``ValueError`` unless the code (case and
    surrounding spaces ignored) is an assigned ISO 3166-1 alpha-2 code or ``EU`` / ``EEA``."""
    if v is None:
        return v
    code = v.strip().upper()
    if code in ISO_3166_ALPHA2 or code in REGION_GROUPS:
        return code
    hint = f" (did you mean {_HINTS[code]}?)" if code in _HINTS else ""
    raise ValueError(f"region {v!r} is not an ISO 3166-1 alpha-2 code (e.g. DE, CN, US) or EU / EEA{hint}")


def check_cutoff_region(v: str | None) -> str:
    """A cutoff's region: ``check_region``, or ``*`` (also for None or blank) for every region."""
    text = (v or "").strip() or ALL_REGIONS
    return ALL_REGIONS if text == ALL_REGIONS else str(check_region(text))
