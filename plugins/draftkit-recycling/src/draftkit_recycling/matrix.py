"""The adjacency matrix of Token Recycling: the target's own top-k guesses per token.

Every verification step computes the target's next-token logits after the root
and after every draft node. Plain decoding throws all but the argmax away; Token
Recycling keeps, for each token ``t``, the ``k`` most likely tokens the target
predicted right after ``t`` the last time it saw ``t``. Those "recycled"
candidates are drafted the next time ``t`` comes up.

The matrix is ``int32 [V, k]``: row ``t`` holds candidate token ids, best first;
:data:`UNKNOWN` (-1) fills rows never observed. A row is always written whole,
so ``matrix[t, 0] == UNKNOWN`` means "nothing known about t". For a 32k
vocabulary and ``k = 8`` that is 1 MB, and it never grows.

Everything here is a plain function: no state lives in this module. The one
function that mutates (:func:`record`) writes into the array it is handed, as a
kernel writes into a preallocated buffer.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import torch

__all__ = [
    "UNKNOWN",
    "empty_matrix",
    "top_candidates",
    "top_candidates_reference",
    "record",
    "record_reference",
    "rows_to_record",
    "rank_hits",
]

#: Marks a matrix entry (and so a whole row) that holds no candidate yet.
UNKNOWN = -1


def empty_matrix(vocab_size: int, k: int) -> np.ndarray:
    """A matrix with no knowledge: ``int32 [vocab_size, k]`` filled with :data:`UNKNOWN`."""
    if vocab_size < 1 or k < 1:
        raise ValueError(f"empty_matrix needs vocab_size >= 1 and k >= 1, got {vocab_size} and {k}")
    return np.full((vocab_size, k), UNKNOWN, dtype=np.int32)


def top_candidates_reference(logits: np.ndarray, k: int) -> np.ndarray:
    """The specification of :func:`top_candidates`, written for clarity, not speed.

    Row ``j`` of the result lists the ``k`` token ids with the largest logits in
    row ``j``, best first; equal logits are ordered by the smaller token id
    first, so the result is a deterministic function of the logits. When the
    vocabulary has fewer than ``k`` tokens the row is padded with :data:`UNKNOWN`.
    """
    rows = np.asarray(logits, dtype=np.float64)
    out = np.full((rows.shape[0], k), UNKNOWN, dtype=np.int32)
    for j, row in enumerate(rows):
        order = sorted(range(row.size), key=lambda t, r=row: (-r[t], t))
        best = order[:k]
        out[j, : len(best)] = best
    return out


def top_candidates(logits: torch.Tensor | np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` token ids of each row of ``logits`` (float ``[m, V]``) as ``int32 [m, k]``.

    Same result as :func:`top_candidates_reference` (ties: smaller id first),
    computed with ``torch.topk`` on the logits' own device; only the ``[m, k]``
    result is copied to the host. ``topk`` does not promise an order among
    equal values, so it is asked for ``k + 1`` values: a row where two adjacent
    values among them are equal (a tie inside the top ``k``, or one across its
    edge) is redone with a stable sort. Trained and random models in float
    precision almost never produce such ties, so the slow path costs nothing in
    practice. Logits must be finite or ``-inf`` (no NaN).
    """
    x = torch.as_tensor(logits)
    if x.ndim != 2:
        raise ValueError(f"top_candidates expects logits of shape [m, V], got {tuple(x.shape)}")
    m, vocab = x.shape
    out = np.full((m, k), UNKNOWN, dtype=np.int32)
    kk = min(k, vocab)
    if m == 0 or kk == 0:
        return out
    values, indices = torch.topk(x, min(k + 1, vocab), dim=-1, largest=True, sorted=True)
    indices = indices[:, :kk]
    tied = (values[:, 1:] == values[:, :-1]).any(dim=-1)
    for j in torch.nonzero(tied).flatten().tolist():
        # Descending stable sort keeps equal values in ascending id order.
        indices[j] = torch.sort(x[j], descending=True, stable=True).indices[:kk]
    out[:, :kk] = indices.cpu().numpy().astype(np.int32)
    return out


def record(matrix: np.ndarray, tokens: np.ndarray | Sequence[int], candidates: np.ndarray) -> None:
    """Write ``candidates[j]`` into row ``tokens[j]`` of ``matrix``, in place.

    When a token occurs several times in ``tokens`` its *last* occurrence wins,
    so callers order their observations from least to most trusted. (NumPy's
    fancy assignment gives no such guarantee for repeated indices, hence the
    explicit de-duplication.)
    """
    toks = np.asarray(tokens, dtype=np.int64).reshape(-1)
    if toks.size == 0:
        return
    if candidates.shape != (toks.size, matrix.shape[1]):
        raise ValueError(
            f"record: {toks.size} tokens need candidates of shape ({toks.size}, {matrix.shape[1]}), "
            f"got {candidates.shape}"
        )
    # np.unique on the reversed array returns, per token, the index of its last occurrence.
    _, first_in_reversed = np.unique(toks[::-1], return_index=True)
    last = toks.size - 1 - first_in_reversed
    matrix[toks[last]] = candidates[last]


def record_reference(matrix: np.ndarray, tokens: Sequence[int], candidates: np.ndarray) -> None:
    """The specification of :func:`record`: write the rows one after another."""
    for j, tok in enumerate(tokens):
        matrix[int(tok)] = candidates[j]


def rows_to_record(
    root_token: int,
    tree_tokens: np.ndarray,
    tree_parents: np.ndarray,
    accepted_nodes: Sequence[int],
    stop_tokens: Collection[int] = frozenset(),
) -> tuple[np.ndarray, np.ndarray]:
    """Which logits rows of a verified tree to record, and under which token.

    The verification logits have one row for the root (row 0, the prediction
    after ``root_token``) and one per tree node (row ``i + 1``, after node
    ``i``'s token). Returns ``(tokens, rows)``, int64 ``[m]`` each: record
    ``logits[rows[j]]`` under ``tokens[j]``, in this order, so that with
    :func:`record` a later entry wins when a token occurs several times:

    1. nodes off the accepted path, in node order;
    2. the root;
    3. the accepted nodes, root to leaf.

    Predictions made on the context that was actually generated are the most
    likely to recur, so they overwrite those made inside rejected branches.

    A row whose prefix contains a stop token (EOS) is skipped, the stop token's
    own row included: what a model predicts after the end of a document must not
    be drafted from, and nothing after the end of generation may feed adaptive
    state. If the root itself is a stop token nothing is recorded.
    """
    stops = frozenset(int(t) for t in stop_tokens)
    tokens = np.asarray(tree_tokens, dtype=np.int64).reshape(-1)
    parents = np.asarray(tree_parents, dtype=np.int64).reshape(-1)
    n = tokens.size
    if int(root_token) in stops:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    blocked = np.zeros(n, dtype=bool)
    for i in range(n):  # parents[i] < i: one forward pass settles every path
        blocked[i] = int(tokens[i]) in stops or (parents[i] >= 0 and blocked[parents[i]])
    on_path = np.zeros(n, dtype=bool)
    path = [int(a) for a in accepted_nodes]
    on_path[path] = True
    order = [i for i in range(n) if not on_path[i] and not blocked[i]]
    out_tokens = [int(tokens[i]) for i in order] + [int(root_token)]
    out_rows = [i + 1 for i in order] + [0]
    for i in path:
        if not blocked[i]:
            out_tokens.append(int(tokens[i]))
            out_rows.append(i + 1)
    return np.asarray(out_tokens, dtype=np.int64), np.asarray(out_rows, dtype=np.int64)


def rank_hits(matrix: np.ndarray, sequence: np.ndarray | Sequence[int]) -> np.ndarray:
    """How often each rank of the matrix predicted the next token of ``sequence``.

    For every consecutive pair ``(a, b)`` of ``sequence`` whose first token has
    a known row, count the rank of ``b`` in row ``a`` (column ``r``), or a miss
    (column ``k``) when ``b`` is not in the row. Returns int64 ``[k + 1]``.
    Normalised, the first ``k`` entries estimate the rank probabilities that
    shape the tree template (:func:`draftkit_recycling.template.build_template`).
    """
    seq = np.asarray(sequence, dtype=np.int64).reshape(-1)
    rows, k = matrix.shape
    counts = np.zeros(k + 1, dtype=np.int64)
    if seq.size < 2:
        return counts
    prev, nxt = seq[:-1], seq[1:]
    inside = (prev >= 0) & (prev < rows)
    prev, nxt = prev[inside], nxt[inside]
    cand = matrix[prev]
    known = cand[:, 0] >= 0
    match = cand[known] == nxt[known, None]
    ranks = np.where(match.any(axis=1), match.argmax(axis=1), k)
    np.add.at(counts, ranks, 1)
    return counts
