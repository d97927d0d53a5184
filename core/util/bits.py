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
