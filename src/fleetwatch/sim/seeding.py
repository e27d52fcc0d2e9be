"""Deterministic pseudo-random numbers from a seed and a path of labels.

`mix(seed, "proc", 3, 7)` is the same number in every run and process (unlike `hash()`),
so a host's data can be rebuilt from its seed at any time instead of being kept in memory.
"""

from __future__ import annotations

import hashlib
import uuid


def mix(*parts: object) -> int:
    """A 64-bit unsigned integer determined only by the parts."""
    data = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def pick(options: tuple[str, ...] | list[str], *parts: object) -> str:
    """One of the options, chosen by the parts."""
    return options[mix(*parts) % len(options)]


def seeded_uuid(*parts: object) -> str:
    """A version-4 UUID string determined by the parts."""
    data = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=data, version=4))


def unit(*parts: object) -> float:
    """A float in [0, 1) determined by the parts."""
    return mix(*parts) / 2**64
