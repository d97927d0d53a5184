"""Look-up tables: an exact 1-D k-means per group of weights (``lut_kmeans``), and the coremltools
configurations that use it."""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable
from typing import Any

from .modes import GROUP_SIZE, KMEANS_BINS, WEIGHT_THRESHOLD, Mode


def lut_kmeans(values: Any, bits: int, tables: dict | None = None) -> tuple[Any, Any]:
    """A look-up table of 2^bits values for one group of weights, and each weight's index in it.
    ``tables`` (one compression's store, by bits, dtype and a digest of the group's values):
    a group seen before gets its table again, without clustering.

    coremltools' own k-means (the exact 1-D dynamic programme of ``kmeans1d`` over every distinct
    value) takes ~0.1 s per group of 16 x 1024 fp16 weights: ~12 min for pocket_tts at 6 bits on
    one core. Here the same exact programme (``kmeans.optimal``, compiled: an eighth of kmeans1d's time)
    runs on ``KMEANS_BINS`` weighted points (the group's sorted distinct values cut at equal
    counts and at equal widths, so the tails keep their resolution), and Lloyd's iterations over
    the exact values refine it. Measured against coremltools' k-means, groups of 16 x 1024
    (16 x 4096 for Student-t), SNR / time: Gaussian 6-bit 32.20 / 32.24 dB, 7.9 / 104 ms; Laplace
    6-bit 30.67 / 30.69 dB; Student-t(3) 6-bit 27.82 / 27.83 dB, 11 / 185 ms; 4-bit equal to 0.01
    dB in 3.6-8 ms / 27-52 ms. With the compiled programme and iterations (2026-12-05, 2 cores,
    groups of 300, 2048 and 16 x 1024 values, heavy-tailed and tied, fp16 and float32): 1.2 s for
    900 tables of 4, 6 and 8 bits that took 4.4 s with kmeans1d; the same tables for 872 of them,
    the others (small groups at 8 bits, where splits of equal cost abound) an equally optimal split
    of the binned points refined to another local optimum, within ±8 % of the noise.
    """
    import numpy as np

    flat = np.asarray(values).reshape(-1)
    size = 1 << bits
    if tables is None:
        return _lut_kmeans(flat, size)
    key = _table_key(flat, bits)
    if key in tables:
        lut = tables[key]
        return lut, _nearest(flat, lut)
    lut, index = _lut_kmeans(flat, size)
    tables[key] = lut
    return lut, index


def _table_key(flat: Any, bits: int) -> tuple:
    """A group's key in a ``tables`` store: its bits, dtype and a digest of its values."""
    import hashlib

    import numpy as np

    # sha256 (hardware-accelerated here): 17 us per group of 16 x 1024 fp16 weights, blake2b 32 us
    return (bits, flat.dtype.str, hashlib.sha256(np.ascontiguousarray(flat).data).digest())


#: how many weights :func:`prefill_tables` may hold copies of at once, handed out or waiting for
#: their tables (64 M fp16 weights, 128 MB); and how many it hands a process in one job
PREFILL_BATCH = 1 << 26
PREFILL_JOB = 1 << 20


def kmeans_workers() -> int:
    """Processes the look-up tables of one compression are clustered in: this process's share of
    the cores (``util.cpus.cpu_share``)."""
    from ..util.cpus import cpu_share

    return cpu_share()


class _Prefill:
    """Groups handed in as they are cut (:meth:`add`), clustered in ``workers`` processes in jobs of
    PREFILL_JOB weights; past PREFILL_BATCH weights out, it waits for the oldest job. Each table
    lands in the store its group was added for. A group already in its store, or already out, is
    not clustered again. The processes start with the first full job: fewer weights than that are
    left to the caller's own ``lut_kmeans`` (a pool costs more than it saves there; and a process
    that has not imported coremltools yet would have each worker import it, ~2.5 s)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool: Any = None
        self.job: list[tuple[tuple, Any, int, dict]] = []  # (key, values, table size, the store it goes to)
        self.pending: set[tuple] = set()  # keys handed out or in ``job``
        self.running: deque = deque()  # (future, [(key, store)], weights)
        self.held = [0, 0]  # weights in ``job``, weights handed out and not yet back
        self.clustered = 0

    def add(self, flat: Any, bits: int, tables: dict) -> None:
        key = _table_key(flat, bits)
        if key not in tables and key not in self.pending:
            self.job.append((key, flat.copy(), 1 << bits, tables))
            self.pending.add(key)
            self.held[0] += flat.size
        if self.held[0] >= PREFILL_JOB:
            self.hand_out()

    def _receive(self) -> None:
        future, stores, weights = self.running.popleft()
        for (key, tables), lut in zip(stores, future.result()):
            tables[key] = lut
            self.pending.discard(key)
        self.held[1] -= weights
        self.clustered += len(stores)

    def hand_out(self) -> None:
        if self.job:
            if self.pool is None:
                self.pool = _pool(self.workers)
            future = self.pool.submit(_cluster_all, [(values, size) for _, values, size, _ in self.job])
            self.running.append((future, [(key, tables) for key, _, _, tables in self.job], self.held[0]))
            self.held[1] += self.held[0]
            self.held[0] = 0
            self.job.clear()
        while self.running and (self.held[1] >= PREFILL_BATCH or self.running[0][0].done()):
            self._receive()

    def finish(self) -> int:
        """Every table back in its store (less than a job in all: none clustered, the caller's
        ``lut_kmeans`` clusters them); how many groups were clustered."""
        if self.pool is not None:
            self.hand_out()
            while self.running:
                self._receive()
        return self.clustered

    def close(self) -> None:
        """The processes stopped (jobs not started are dropped)."""
        self.job.clear()
        self.pending.clear()
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None


def _pool(workers: int) -> Any:
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor

    # fork on Linux (the workers run numpy and kmeans1d only); elsewhere spawn: macOS's system
    # frameworks (CoreML among them) are not safe in a forked child
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def prefill_groups(groups: Iterable[Any], bits: int, tables: dict, workers: int) -> int:
    """Cluster ``groups`` (arrays of values) at ``bits`` in ``workers`` processes into ``tables``, as
    :func:`lut_kmeans` would; it then finds each group's table and only indexes the values. How
    many groups were clustered (none with fewer than two workers: the caller's own ``lut_kmeans``
    clusters them)."""
    import numpy as np

    if workers < 2:
        return 0
    prefill = _Prefill(workers)
    try:
        for values in groups:
            prefill.add(np.asarray(values).reshape(-1), bits, tables)
        return prefill.finish()
    finally:
        prefill.close()


def prefill_tables(prog: Any, graph_pass: Any, workers: int) -> int:
    """Cluster, in ``workers`` processes, every group of weights the configured palettization
    ``graph_pass`` is about to cluster, into the ``tables`` store its look-up function holds; the
    pass then finds each group's table and only indexes the weights. The groups are cut by
    coremltools' own ``blockwise_compress`` (a dry run whose look-up function collects them), so
    they are the pass's groups byte for byte; a table is the one ``lut_kmeans`` would compute in
    the pass. Groups are handed out as they are cut (:class:`_Prefill`), so the processes cluster
    while this one still cuts. How many groups were clustered.

    Measured (pocket_tts fp16-mixed, full size, 2 cores, 2026-12-04): cutting every group first and
    clustering them after, its three compress stages took 54.9 / 8.7 / 25.0 s."""

    import numpy as np
    from coremltools.optimize import _utils as optimize_utils
    from coremltools.optimize.coreml._quantization_passes import palettize_weights

    if workers < 2:
        return 0
    config = graph_pass.config

    def collect_function(fn: Any, prefill: _Prefill) -> None:
        def collect(values: Any, bits: int, tables: dict) -> tuple[Any, Any]:
            flat = np.asarray(values).reshape(-1)
            prefill.add(flat, bits, tables)
            return np.zeros(1 << bits, flat.dtype), np.zeros(flat.size, np.uint8)  # the dry run's stand-ins

        for op in list(fn.operations):
            if op.op_type != "const":
                continue
            op_config = config._get_const_op_config(op)
            lut_function = getattr(op_config, "lut_function", None)
            if not (isinstance(lut_function, functools.partial) and lut_function.func is lut_kmeans):
                continue
            if not graph_pass.need_compress_const(op, config._is_deprecated, op_config.weight_threshold):
                continue
            weight = op.outputs[0].val
            block_sizes, axis = optimize_utils.infer_block_sizes(op, op_config, weight, return_channel_axis=True)
            if block_sizes is None:
                continue
            keywords = lut_function.keywords
            collector = functools.partial(collect, bits=keywords["bits"], tables=keywords["tables"])
            palettize_weights.blockwise_compress(weight, "CUSTOM", None, block_sizes, collector, 1, channel_axis=axis)

    prefill = _Prefill(workers)
    try:
        for fn in prog.functions.values():
            with fn:  # coremltools' checks build ops: they need the block, as in the pass
                collect_function(fn, prefill)
        return prefill.finish()
    finally:
        prefill.close()


def _cluster_all(jobs: list[tuple[Any, int]]) -> list[Any]:
    """The tables of one job's groups, in a worker process of :func:`prefill_tables`."""
    return [_lut_kmeans(flat, size)[0] for flat, size in jobs]


def _nearest(flat: Any, lut: Any) -> Any:
    """Each value's index of the table entry nearest to it (ties to the larger entry). fp16 values
    are placed by bit pattern, every pattern up to the largest present by one walk along the
    sorted entries, then looked up (``kmeans.nearest_codes``): a group of 16 x 1024 weights in
    ~0.03 ms; one search per value took 0.51 ms (12 of flowlm's 64 s of mixed compression,
    2026-12-05)."""
    import numpy as np

    from . import kmeans

    order = np.argsort(lut, kind="stable")
    stored = lut[order].astype(np.float64)
    edges = (stored[:-1] + stored[1:]) / 2
    if flat.dtype != np.float16:
        return order[np.searchsorted(edges, flat.astype(np.float64), side="right")].astype(np.uint8)
    out = np.empty(flat.size, np.uint8)
    kmeans.nearest_codes(np.ascontiguousarray(flat).view(np.uint16), _fp16_values(), edges, order.astype(np.int64), out)
    return out


@functools.cache
def _fp16_values() -> Any:
    """Every fp16 bit pattern's value, as float64 (512 KB, made once)."""
    import numpy as np

    return np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float64)


def _distinct(flat: Any) -> tuple[Any, Any, Any]:
    """``np.unique(flat, return_inverse=True, return_counts=True)`` (inverse flat). For fp16, by
    counting the 65,536 bit patterns instead of sorting: 0.34 ms instead of 4.5 ms for a group of
    16 x 1536 weights, a third of a table's time (-0 counted as 0, as np.unique does; a group
    holding a NaN takes np.unique)."""
    import numpy as np

    if flat.dtype != np.float16:
        distinct, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        return distinct, inverse.reshape(-1), counts
    codes = flat.view(np.uint16)
    counts_all = np.bincount(codes, minlength=1 << 16)
    if counts_all[0x7C01:0x8000].any() or counts_all[0xFC01:].any():  # NaN patterns
        distinct, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        return distinct, inverse.reshape(-1), counts
    counts_all[0] += counts_all[0x8000]  # -0 is 0
    counts_all[0x8000] = 0
    present = np.flatnonzero(counts_all)
    order = np.argsort(present.astype(np.uint16).view(np.float16), kind="stable")
    ranked = present[order]
    rank = np.zeros(1 << 16, np.intp)
    rank[ranked] = np.arange(len(ranked))
    rank[0x8000] = rank[0]
    return ranked.astype(np.uint16).view(np.float16), rank[codes], counts_all[ranked]


def _lut_kmeans(flat: Any, size: int) -> tuple[Any, Any]:
    import numpy as np

    from . import kmeans

    x = counts = None
    if flat.dtype == np.float16:  # the values and counts, compiled (no inverse: unused past ``size``)
        x, counts = kmeans.distinct_fp16(np.ascontiguousarray(flat).view(np.uint16), _fp16_values())
        if not x.size or x.size <= size:  # a NaN among them, or a table holding every value
            x = counts = None
    if x is None or counts is None:
        distinct, inverse, counts = _distinct(flat)
        m = len(distinct)
        if m <= size:
            lut = np.zeros(size, flat.dtype)
            lut[:m] = distinct
            return lut, inverse.astype(np.uint8)
        x = distinct.astype(np.float64)
    m = len(x)
    points, weight = x, counts.astype(np.float64)
    if m > KMEANS_BINS:
        half = KMEANS_BINS // 2
        cuts = np.union1d(x[(np.arange(1, half) * m) // half], np.linspace(x[0], x[-1], half + 1)[1:-1])
        b = np.searchsorted(cuts, x)
        binned = np.bincount(b, weights=counts)
        used = binned > 0
        if np.count_nonzero(used) > size:  # else the table would have fewer entries: every value clustered
            points, weight = np.bincount(b, weights=counts * x)[used] / binned[used], binned[used]
    centroids = kmeans.optimal(points, weight, size)
    # Lloyd's iterations on the exact values, as prefix sums over the sorted distinct values
    mass = np.concatenate([[0], np.cumsum(counts)])
    moment = np.concatenate([[0.0], np.cumsum(counts * x)])
    centroids = kmeans.lloyd(x, mass, moment, centroids, 300)
    # each weight indexes the table entry nearest to it as stored (in the weights' dtype)
    lut = centroids.astype(flat.dtype)
    return lut, _nearest(flat, lut)


def op_config(mode: Mode, tables: dict) -> Any:
    import coremltools.optimize.coreml as cto

    if mode.kind == "linear":
        return cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=WEIGHT_THRESHOLD
        )
    return palette_config(mode.bits, tables)


def palette_config(bits: int, tables: dict) -> Any:
    """Look-up tables of ``bits`` per group of ``GROUP_SIZE`` output channels, by ``lut_kmeans``.
    ``tables``: one compression's store of tables — coremltools compresses each function's copy of
    a weight the functions share (kokoro's predictor: 5 functions), and ``mixed`` palettizes every
    weight at 4 and 6 bits before its final pass: the same groups, whose k-means is most of a
    compression's time, come back."""

    import coremltools.optimize.coreml as cto

    return cto.OpPalettizerConfig(
        mode="custom",
        lut_function=functools.partial(lut_kmeans, bits=bits, tables=tables),
        granularity="per_grouped_channel",
        group_size=GROUP_SIZE,
        weight_threshold=WEIGHT_THRESHOLD,
    )
