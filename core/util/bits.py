"""Sub-byte integers packed without gaps (look-up table indices: in a package's weight file least
significant bit first, in zoo's compressed constants most significant first), unpacked one uint8
per value.

numpy's ``unpackbits`` spreads every bit to a byte (8x the packed size, then a product to gather
them): vibevoice's 136 M-entry token table took 6 s and 1.1 GB to unpack that way, its packages'
indices 7.7 s. Here a width dividing 8 is shifted out of each byte in place; any other (3, 5, 6,
7 bits) from words of the fewest bytes holding whole values (6 bits: 4 values in 3 bytes), in
chunks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: words unpacked at once for widths that do not divide 8 (at most 8 M values, 8 MB of words)
CHUNK_GROUPS = 1 << 20


def unpack_bits(packed: Any, bits: int, count: int, lsb_first: bool = True) -> np.ndarray:
    """The first ``count`` unsigned ``bits``-bit values (1 ≤ bits ≤ 8) packed in ``packed``'s
    bytes, the first value in the least (``lsb_first``) or the most significant bits of the first
    byte. Raises ValueError when the bytes hold fewer values."""
    if not 1 <= bits <= 8:
        raise ValueError(f"{bits}-bit values are not sub-byte integers")
    data = np.asarray(packed).reshape(-1).view(np.uint8)
    need = -(-count * bits // 8)
    if data.size < need:
        raise ValueError(f"{data.size} bytes hold fewer than {count} {bits}-bit values")
    mask = (1 << bits) - 1
    if 8 % bits == 0:
        per = 8 // bits
        source = data[:need]
        out = np.empty((source.size, per), np.uint8)
        for j in range(per):
            shift = j * bits if lsb_first else 8 - (j + 1) * bits
            np.bitwise_and(np.right_shift(source, shift), mask, out=out[:, j])
        return out.reshape(-1)[:count]
    span = math.lcm(bits, 8)  # the fewest bits holding whole values and whole bytes: one word
    per, width = span // bits, span // 8  # values per word, bytes per word
    word_type: Any = np.uint32 if span <= 32 else np.uint64
    groups = -(-count // per)
    out = np.empty((groups, per), np.uint8)
    for start in range(0, groups, CHUNK_GROUPS):
        stop = min(groups, start + CHUNK_GROUPS)
        raw = data[start * width : stop * width]
        if raw.size < (stop - start) * width:  # the last values' bytes: the rest of their word is zero
            raw = np.concatenate([raw, np.zeros((stop - start) * width - raw.size, np.uint8)])
        columns: Any = raw.reshape(-1, width)
        word: Any = np.zeros(stop - start, word_type)
        for k in range(width):
            word |= columns[:, k].astype(word_type) << word_type(8 * k if lsb_first else 8 * (width - 1 - k))
        for j in range(per):
            shift = j * bits if lsb_first else (per - 1 - j) * bits
            out[start:stop, j] = (word >> word_type(shift)) & word_type(mask)
    return out.reshape(-1)[:count]


def pack_bits(values: Any, bits: int, lsb_first: bool = True) -> np.ndarray:
    """``values`` (unsigned, each < 2**bits, 1 ≤ bits ≤ 8) packed without gaps, as
    :func:`unpack_bits` reads them: ceil(count·bits / 8) bytes, the unused bits of the last byte
    zero. Whole bytes or words at a time, as ``unpack_bits``: numpy's bit-by-bit ``packbits`` of
    ``unpackbits`` spread took 4.4 s for vibevoice's 136 M-entry token table (2026-12-05)."""
    if not 1 <= bits <= 8:
        raise ValueError(f"{bits}-bit values are not sub-byte integers")
    flat = np.ascontiguousarray(values).reshape(-1)
    if flat.size and int(flat.max()) >> bits:
        raise ValueError(f"a value does not fit in {bits} bits")
    flat = flat.astype(np.uint8, copy=False)
    count = flat.size
    need = -(-count * bits // 8)
    span = math.lcm(bits, 8)
    per, width = span // bits, span // 8  # values per word, bytes per word
    groups = -(-count // per)
    out = np.empty((groups, width), np.uint8)
    word_type: Any = np.uint8 if span == 8 else np.uint32 if span <= 32 else np.uint64
    for start in range(0, groups, CHUNK_GROUPS):
        stop = min(groups, start + CHUNK_GROUPS)
        chunk = flat[start * per : stop * per]
        if chunk.size < (stop - start) * per:  # the last word's missing values are zero
            chunk = np.concatenate([chunk, np.zeros((stop - start) * per - chunk.size, np.uint8)])
        columns = chunk.reshape(-1, per)
        word: Any = np.zeros(stop - start, word_type)
        for j in range(per):
            shift = j * bits if lsb_first else (per - 1 - j) * bits
            word |= columns[:, j].astype(word_type) << word_type(shift)
        for k in range(width):
            out[start:stop, k] = (word >> word_type(8 * k if lsb_first else 8 * (width - 1 - k))) & word_type(0xFF)
    return out.reshape(-1)[:need]
