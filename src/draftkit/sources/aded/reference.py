"""Readable Python versions of the ADED algorithms, over dictionaries.

This is the specification the Numba kernels (:mod:`.kernels`) are checked
against: the tests require both to produce identical matrices, identical tables
after the same updates and identical drafts for the same seed. It is also the
backend the source uses when Numba's JIT is disabled (``NUMBA_DISABLE_JIT=1``),
where interpreted kernels would be slower than plain dictionaries.

Arithmetic is float64 on weights rounded to float32 after every write, exactly
as the kernels store them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

import numpy as np

from .config import AdaptConfig, MctsConfig, puct_factors, window_chunks
from .table import TrigramMatrix, _as_tokens, _check_vocab

__all__ = ["reference_build_matrix", "ReferenceTable", "XorShift"]

_MASK = (1 << 64) - 1


def _f32(x: float) -> float:
    return float(np.float32(x))


def reference_build_matrix(
    token_arrays: Iterable[object],
    vocab_size: int,
    *,
    top_k: int = 12,
    max_entries: int | None = None,
    eos_token_ids: Iterable[int] = (),
) -> TrigramMatrix:
    """Same result as :func:`.table.build_matrix`, by counting in a dictionary."""
    _check_vocab(vocab_size)
    v = int(vocab_size)
    eos = {int(t) for t in eos_token_ids}
    counts: Counter[tuple[int, int, int]] = Counter()
    tokens = 0
    for arr in token_arrays:
        toks = _as_tokens(arr, v).tolist()
        tokens += len(toks)
        for a, b, c in zip(toks, toks[1:], toks[2:], strict=False):
            if a in eos or b in eos:
                continue
            counts[(a, b, c)] += 1
    by_bigram: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for (a, b, c), n in counts.items():
        by_bigram.setdefault((a, b), []).append((c, n))
    entries: list[tuple[int, int, int, float]] = []  # (bigram key, successor, count, weight)
    for (a, b), succ in sorted(by_bigram.items()):
        total = sum(n for _, n in succ)
        for c, n in sorted(succ, key=lambda cn: (-cn[1], cn[0]))[:top_k]:
            entries.append((a * v + b, c, n, _f32(n / total)))
    if max_entries is not None and len(entries) > max_entries:
        ranked = sorted(range(len(entries)), key=lambda i: (-entries[i][2], entries[i][0] * v + entries[i][1]))
        kept = set(ranked[:max_entries])
        entries = [e for i, e in enumerate(entries) if i in kept]
    keys: list[int] = []
    offsets = [0]
    for i, (key, _, _, _) in enumerate(entries):
        if not keys or keys[-1] != key:
            if keys:
                offsets.append(i)
            keys.append(key)
    if keys:
        offsets.append(len(entries))
    return TrigramMatrix(
        v,
        np.asarray(keys, np.int64),
        np.asarray(offsets, np.int64),
        np.asarray([e[1] for e in entries], np.int32),
        np.asarray([e[3] for e in entries], np.float32),
        int(top_k),
        tokens,
    )


class XorShift:
    """xorshift64 with explicit state, as in the kernels."""

    def __init__(self, state: int) -> None:
        self.state = state & _MASK

    def uniform(self) -> float:
        x = self.state
        x ^= x >> 12
        x ^= (x << 25) & _MASK
        x ^= x >> 27
        self.state = x
        return float(x >> 11) * (1.0 / 9007199254740992.0)

    def pick(self, weights: list[float], total: float) -> int:
        target = self.uniform() * total
        cum = 0.0
        for j, w in enumerate(weights):
            cum += w
            if target < cum:
                return j
        return len(weights) - 1


class ReferenceTable:
    """The adaptive table as ``{(a, b): {successor: weight}}``, rows in row order.

    A row lists the matrix's successors first, then inserted ones oldest first
    (dict insertion order). ``_inserted`` remembers insertion order for the
    bounded pool; ``_dropped`` counts entries a full row dropped since the last
    compaction, because the kernels' pool keeps their slots until then (and
    compacts when live + dropped entries would overflow it).
    """

    backend = "reference"

    def __init__(self, matrix: TrigramMatrix, adapt: AdaptConfig) -> None:
        self.matrix = matrix
        self.adapt = adapt
        self.vocab_size = matrix.vocab_size
        self.reset()

    def reset(self) -> None:
        self._rows: dict[tuple[int, int], dict[int, float]] = {}
        for a, b, succ in self.matrix.rows():
            self._rows[(a, b)] = {c: float(w) for c, w in succ}
        self._inserted: dict[tuple[int, int, int], None] = {}
        self._dropped = 0

    # -- the adaptive rule ---------------------------------------------------------------------

    def _compact(self, keep: int) -> None:
        order = list(self._inserted)
        ranked = sorted(range(len(order)), key=lambda i: (-self._rows[order[i][:2]][order[i][2]], -i))
        survivors = set(ranked[:keep])
        for i, (a, b, c) in enumerate(order):
            if i not in survivors:
                row = self._rows[(a, b)]
                del row[c]
                if not row:
                    del self._rows[(a, b)]
        self._inserted = {order[i]: None for i in sorted(survivors)}
        self._dropped = 0

    def _drop_weakest(self, a: int, b: int, row: dict[int, float]) -> None:
        learnt = [c for c in row if (a, b, c) in self._inserted]  # oldest first
        victim = min(learnt, key=lambda c: row[c])  # the first (oldest) of the weakest
        del row[victim]
        del self._inserted[(a, b, victim)]
        self._dropped += 1

    def _num_learnt(self, a: int, b: int, row: dict[int, float]) -> int:
        return sum(1 for c in row if (a, b, c) in self._inserted)

    def update(self, tokens: np.ndarray, eos: np.ndarray | None = None) -> int:
        eos_set = set() if eos is None else {int(t) for t in eos}
        a_cfg = self.adapt
        v = self.vocab_size
        inserted = 0
        for chunk in window_chunks(np.asarray(tokens, dtype=np.int64)):
            limit = a_cfg.max_inserted
            if len(self._inserted) + self._dropped + chunk.size - 2 > limit:
                self._compact(min(limit // 2, limit - (chunk.size - 2)))
            toks = chunk.tolist()
            for a, b, c in zip(toks, toks[1:], toks[2:], strict=False):
                if min(a, b, c) < 0 or max(a, b, c) >= v or a in eos_set or b in eos_set:
                    continue
                row = self._rows.setdefault((a, b), {})
                if c in row:
                    row[c] = _f32(min(row[c] + a_cfg.increment, a_cfg.max_weight))
                else:
                    if self._num_learnt(a, b, row) >= a_cfg.max_learnt_per_bigram:
                        self._drop_weakest(a, b, row)
                    row[c] = _f32(min(0.0 + a_cfg.increment, a_cfg.max_weight))
                    self._inserted[(a, b, c)] = None
                    inserted += 1
        return inserted

    # -- drafting ------------------------------------------------------------------------------

    def _succ(self, a: int, b: int, limit: int) -> list[tuple[int, float]]:
        return [(c, w) for c, w in self._rows.get((a, b), {}).items() if c < limit]

    def draft(
        self,
        a: int,
        b: int,
        eos: np.ndarray,
        limit: int,
        max_len: int,
        max_nodes: int,
        mcts: MctsConfig,
        rng_state: int,
        out_paths: np.ndarray,
        out_lens: np.ndarray,
        out_w: np.ndarray,
    ) -> int:
        """The same MCTS as :func:`.kernels.mcts_draft`, over Python lists."""
        eos_set = {int(t) for t in eos}
        v = self.vocab_size
        rng = XorShift(rng_state)
        tree_limit = min(mcts.rollout_depth - 1, max_len)
        horizon = mcts.rollout_depth - 1
        if tree_limit < 1 or not (0 <= a < v and 0 <= b < v) or b in eos_set:
            return 0
        if not self._succ(a, b, limit):
            return 0
        factors = puct_factors(mcts.c1, mcts.c2, mcts.iterations)
        tok, par, kids, vis, score, prior, depth, state = [b], [-1], [[]], [0], [0.0], [0.0], [0], [0]
        for _ in range(mcts.iterations):
            node, d, prev, acc = 0, 0, a, 0.0
            while kids[node] and d < tree_limit:
                factor = factors[vis[node]]
                best, best_score = kids[node][0], 0.0
                for ch in kids[node]:
                    # score/visits + factor * (prior / (1 + visits)), grouped as the kernel caches it
                    s = math.inf if vis[ch] == 0 else score[ch] / vis[ch] + factor * (prior[ch] / (1.0 + vis[ch]))
                    if s > best_score:
                        best, best_score = ch, s
                prev, node, d = tok[node], best, d + 1
                acc += prior[node]
            if state[node] == 0 and d < tree_limit:
                state[node] = 1
                succ = self._succ(prev, tok[node], limit)
                total = 0.0
                for _, w in succ:
                    total += w
                if succ and total > 0.0:
                    for c, w in succ:
                        kids[node].append(len(tok))
                        tok.append(c)
                        par.append(node)
                        kids.append([])
                        vis.append(0)
                        score.append(0.0)
                        prior.append(w / total if mcts.normalize else w)
                        depth.append(d + 1)
                        state.append(2 if c in eos_set else 0)
                    pick = rng.pick([w for _, w in succ], total)
                    prev, node, d = tok[node], kids[node][pick], d + 1
                    acc += prior[node]
            if state[node] != 2:
                x, y, dd = prev, tok[node], d
                while dd < horizon:
                    succ = self._succ(x, y, limit)
                    total = 0.0
                    for _, w in succ:
                        total += w
                    if not succ or total <= 0.0:
                        break
                    pick = rng.pick([w for _, w in succ], total)
                    c, w = succ[pick]
                    acc += w / total if mcts.normalize else w
                    dd += 1
                    if c in eos_set:
                        break
                    x, y = y, c
            reward = 1.0 + acc
            u = node
            while u >= 0:
                vis[u] += 1
                score[u] += reward
                u = par[u]

        width = out_paths.shape[1]
        ranked = sorted(range(1, len(tok)), key=lambda i: (-vis[i], i))
        outputs: list[list[int]] = []
        used_nodes = 0
        for node in ranked[: mcts.num_paths]:
            if depth[node] > width:
                continue
            path: list[int] = []
            u = node
            while u > 0:
                path.append(tok[u])
                u = par[u]
            path.reverse()
            for _ in range(mcts.greedy_extension):
                if len(path) >= max_len or len(path) >= width or path[-1] in eos_set:
                    break
                x = b if len(path) == 1 else path[-2]
                succ = self._succ(x, path[-1], limit)
                if not succ:
                    break
                best = 0
                for j in range(1, len(succ)):
                    if succ[j][1] > succ[best][1]:
                        best = j
                path.append(succ[best][0])
            path = path[:max_len]
            shared = 0
            for prev_path in outputs:
                m = 0
                while m < min(len(prev_path), len(path)) and prev_path[m] == path[m]:
                    m += 1
                shared = max(shared, m)
            if len(path) <= shared:
                continue
            if used_nodes + len(path) - shared > max_nodes:
                path = path[: shared + max_nodes - used_nodes]
                if len(path) <= shared:
                    break
            i = len(outputs)
            out_paths[i, : len(path)] = path
            out_lens[i] = len(path)
            out_w[i] = vis[node]
            used_nodes += len(path) - shared
            outputs.append(path)
        return len(outputs)

    # -- inspection ----------------------------------------------------------------------------

    @property
    def num_inserted(self) -> int:
        return len(self._inserted)

    def successors(self, a: int, b: int) -> list[tuple[int, float]]:
        return list(self._rows.get((a, b), {}).items())

    def to_matrix(self) -> TrigramMatrix:
        v = self.vocab_size
        keys, offsets, succ, weights = [], [0], [], []
        for (a, b) in sorted(self._rows):
            row = self._rows[(a, b)]
            keys.append(a * v + b)
            succ.extend(row)
            weights.extend(row.values())
            offsets.append(len(succ))
        m = self.matrix
        return TrigramMatrix(v, np.asarray(keys, np.int64), np.asarray(offsets, np.int64),
                             np.asarray(succ, np.int32), np.asarray(weights, np.float32), m.top_k, m.tokens,
                             m.fingerprint)
