"""Optimal 1-D k-means of weighted points, Lloyd's refinement over a group's exact values, and
each fp16 weight's nearest table entry, compiled with numba (``palette.lut_kmeans`` calls them
for every look-up table).

``optimal`` is the exact dynamic programme coremltools runs for its own k-means (its bundled
``kmeans1d``): the least within-cluster sum of squares over every split of the sorted points into
k runs. Each row of the programme finds, for every run end j, the best start of the last run;
that start never decreases with j (the cost of a run satisfies the quadrangle inequality: Wu,
"Optimal quantization by matrix searching", J. Algorithms 1991), so a row is solved by divide and
conquer in O(n log n) evaluations instead of kmeans1d's SMAWK, whose constant is larger. Measured
(2026-12-05, 2 cores, 512 weighted points): 16 clusters 0.16 ms (kmeans1d 1.30), 64 clusters 0.65
ms (4.98), 256 clusters 1.83 ms (17.2); the partitions' costs equal kmeans1d's to 4e-16 relative
on 200 random cases (tests/core/test_compress.py compares them).

Compiled on first use and cached beside this module's bytecode, as ``mil.loops`` is.
Imports numpy and numba only.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def optimal(points: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:  # pragma: no cover - compiled
    """The centroids (ascending) of the k runs of the sorted ``points`` (float64, weights > 0) with
    the least weighted sum of squared distances to their run's mean; min(k, len(points)) of them.

    Run costs come from prefix sums of w, w·y and w·y² with y the points less their weighted mean
    (the sums of squares then cancel less: a run's cost is Σw·y² - (Σw·y)² / Σw)."""
    n = points.size
    k = min(k, n)
    total = 0.0
    mean = 0.0
    for i in range(n):
        total += weights[i]
        mean += weights[i] * points[i]
    mean /= total
    p0 = np.zeros(n + 1)
    p1 = np.zeros(n + 1)
    p2 = np.zeros(n + 1)
    for i in range(n):
        y = points[i] - mean
        p0[i + 1] = p0[i] + weights[i]
        p1[i + 1] = p1[i] + weights[i] * y
        p2[i + 1] = p2[i] + weights[i] * y * y
    previous = np.empty(n)  # the least cost of points[0..j] in c runs (row c - 1 of the programme)
    current = np.empty(n)
    start = np.zeros((k, n), np.int32)  # where the last run of the best split of points[0..j] starts
    for j in range(n):
        previous[j] = p2[j + 1] - p1[j + 1] * p1[j + 1] / p0[j + 1]
    # (first end, last end, first start, last start) still to solve: depth ≤ log2 n + 1 per row
    stack = np.empty((2 * 64, 4), np.int64)
    for c in range(1, k):
        stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = c, n - 1, c, n - 1
        top = 1
        while top > 0:
            top -= 1
            first, last, low, high = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3]
            if first > last:
                continue
            mid = (first + last) // 2
            best, best_cost = low, np.inf
            for i in range(low, min(high, mid) + 1):
                s0 = p0[mid + 1] - p0[i]
                s1 = p1[mid + 1] - p1[i]
                cost = previous[i - 1] + (p2[mid + 1] - p2[i]) - s1 * s1 / s0
                if cost < best_cost:
                    best, best_cost = i, cost
            current[mid] = best_cost
            start[c, mid] = best
            stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3] = first, mid - 1, low, best
            stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2], stack[top + 1, 3] = mid + 1, last, best, high
            top += 2
        for j in range(c, n):
            previous[j] = current[j]
    centroids = np.empty(k)
    j = n - 1
    for c in range(k - 1, -1, -1):
        i = start[c, j] if c > 0 else 0
        centroids[c] = (p1[j + 1] - p1[i]) / (p0[j + 1] - p0[i]) + mean
        j = i - 1
    return centroids


@numba.njit(cache=True, nogil=True)
def lloyd(
    values: np.ndarray, mass: np.ndarray, moment: np.ndarray, centroids: np.ndarray, rounds: int
) -> np.ndarray:  # pragma: no cover - compiled
    """Lloyd's iterations on the sorted distinct ``values`` (float64) from ``centroids`` (ascending),
    with ``mass`` and ``moment`` the prefix sums of their counts and count × value (length m + 1):
    each value to its nearest centroid (boundaries at the midpoints, a value on one going up), each
    centroid to its values' mean (a centroid left without values stays); until no value changes
    centroid, at most ``rounds`` times. The arithmetic is the numpy formulation's, step for step."""
    m = values.size
    k = centroids.size
    centroids = centroids.copy()
    edges = np.zeros(k + 1, np.int64)
    edges[k] = m
    new = np.empty(k - 1, np.int64)
    for r in range(rounds):
        for c in range(k - 1):
            new[c] = np.searchsorted(values, (centroids[c] + centroids[c + 1]) / 2)
        if r > 0:
            same = True
            for c in range(k - 1):
                if new[c] != edges[c + 1]:
                    same = False
                    break
            if same:
                break
        for c in range(k - 1):
            edges[c + 1] = new[c]
        for c in range(k):
            count = mass[edges[c + 1]] - mass[edges[c]]
            if count > 0:
                centroids[c] = (moment[edges[c + 1]] - moment[edges[c]]) / count
    return centroids


@numba.njit(cache=True, nogil=True)
def nearest_codes(
    codes: np.ndarray, decoded: np.ndarray, edges: np.ndarray, order: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """``out[i] = order[searchsorted(edges, decoded[codes[i]], side="right")]`` for fp16 values
    given by their bit patterns ``codes`` (``decoded``: every pattern's value as float64; NaN
    sorts after every edge, as numpy's ordering puts it).

    The non-negative patterns (0x0000-0x7C00) rise with their value and the negative ones
    (0x8000-0xFC00) fall: each sign's patterns up to the largest present are placed by one walk
    with a pointer into the sorted edges (no search), then every value is looked up. Measured
    (2026-12-05, ``palette._nearest`` on a group of 16 x 1024 normal weights, 16 or 64 entries):
    0.026-0.035 ms; one binary search per distinct pattern, remembered in a 65,536-entry memo,
    0.22 ms (20 of vibevoice's 162 s of mixed compression in its profile)."""
    n = edges.size
    top_pos, top_neg = -1, -1
    for i in range(codes.size):
        c = int(codes[i])
        if c < 0x8000:
            if c > top_pos:
                top_pos = c
        elif c > top_neg:
            top_neg = c
    table = np.empty(1 << 16, np.uint8)
    j = 0
    for p in range(0, top_pos + 1):
        if p > 0x7C00:  # NaN
            table[p] = order[n]
            continue
        v = decoded[p]
        while j < n and edges[j] <= v:
            j += 1
        table[p] = order[j]
    j = n
    for p in range(0x8000, top_neg + 1):
        if p > 0xFC00:  # NaN
            table[p] = order[n]
            continue
        v = decoded[p]
        while j > 0 and edges[j - 1] > v:
            j -= 1
        table[p] = order[j]
    for i in range(codes.size):
        out[i] = table[codes[i]]


@numba.njit(cache=True, nogil=True)
def energies_fp16(approx: np.ndarray, exact: np.ndarray, decoded: np.ndarray) -> tuple:  # pragma: no cover
    """(Σ (a - e)², Σ e²) in float64 over two fp16 arrays given by their bit patterns (``decoded``:
    every pattern's value as float64): one pass, no widened copies."""
    noise, signal = 0.0, 0.0
    for i in range(exact.size):
        e = decoded[exact[i]]
        d = decoded[approx[i]] - e
        noise += d * d
        signal += e * e
    return noise, signal


@numba.njit(cache=True, nogil=True)
def energies(approx: np.ndarray, exact: np.ndarray) -> tuple:  # pragma: no cover - compiled
    """(Σ (a - e)², Σ e²) in float64 over two float arrays of the same size: one pass."""
    noise, signal = 0.0, 0.0
    for i in range(exact.size):
        e = np.float64(exact[i])
        d = np.float64(approx[i]) - e
        noise += d * d
        signal += e * e
    return noise, signal


@numba.njit(cache=True, nogil=True)
def distinct_fp16(codes: np.ndarray, decoded: np.ndarray) -> tuple:  # pragma: no cover - compiled
    """The distinct values of fp16 weights given by their bit patterns ``codes``, ascending, as
    float64 (``decoded``: every pattern's value), with how many weights hold each: -0 counted as
    0, as ``np.unique`` does. A NaN among them: two empty arrays (the caller takes ``np.unique``).

    Counted per pattern, then each sign's patterns read in value order up to the largest present
    (the negative ones from the largest down): no sort, and none of the 65,536-entry passes
    ``palette._distinct`` makes for the inverse, which a table with more values than entries
    does not use."""
    counts = np.zeros(1 << 16, np.int64)
    top_pos, top_neg = -1, -1
    for i in range(codes.size):
        c = int(codes[i])
        counts[c] += 1
        if c < 0x8000:
            if c > top_pos:
                top_pos = c
        elif c > top_neg:
            top_neg = c
    if top_pos > 0x7C00 or top_neg > 0xFC00:
        return np.empty(0, np.float64), np.empty(0, np.int64)
    if top_neg >= 0x8000 and counts[0x8000] > 0:
        counts[0] += counts[0x8000]
        counts[0x8000] = 0
        if top_pos < 0:
            top_pos = 0
    m = 0
    for p in range(0x8001, top_neg + 1):
        if counts[p]:
            m += 1
    for p in range(0, top_pos + 1):
        if counts[p]:
            m += 1
    values = np.empty(m, np.float64)
    held = np.empty(m, np.int64)
    k = 0
    for p in range(top_neg, 0x8000, -1):
        if counts[p]:
            values[k] = decoded[p]
            held[k] = counts[p]
            k += 1
    for p in range(0, top_pos + 1):
        if counts[p]:
            values[k] = decoded[p]
            held[k] = counts[p]
            k += 1
    return values, held
