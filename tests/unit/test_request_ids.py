"""new_request_id: the UUIDv7 layout (RFC 9562 §5.7), time-ordered, unique."""

from __future__ import annotations

import re
import time
import uuid

from relaygate.ledger.records import new_request_id


def test_a_request_id_is_a_uuidv7_in_hex_after_req() -> None:
    rid = new_request_id()
    assert re.fullmatch(r"req_[0-9a-f]{32}", rid)
    u = uuid.UUID(hex=rid[4:])
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    ms = int(rid[4:16], 16)  # the first 48 bits: Unix time in milliseconds
    assert abs(ms - time.time() * 1000) < 5_000


def test_request_ids_sort_by_the_millisecond_they_were_made_in() -> None:
    earlier = [new_request_id() for _ in range(50)]
    time.sleep(0.003)
    later = [new_request_id() for _ in range(50)]
    assert max(earlier) < min(later)
    assert len(set(earlier + later)) == 100


def test_request_ids_within_one_millisecond_differ_in_their_random_bits() -> None:
    ids = {new_request_id() for _ in range(20_000)}
    assert len(ids) == 20_000
    tails = {rid[-16:] for rid in ids}  # rand_b alone: 62 random bits
    assert len(tails) == 20_000
