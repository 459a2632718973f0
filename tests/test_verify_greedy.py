"""Greedy verifier on hand-built trees and argmax tables."""

from __future__ import annotations

import numpy as np
import torch

from draftkit.logits import LogitsPipeline
from draftkit.types import SamplingParams, TokenTree
from draftkit.verify.greedy import GreedyVerifier, greedy_walk

# Tree used below (tokens in brackets):
#   root -> 0[5] -> 1[6] -> 3[8]
#        -> 2[7] -> 4[9] -> 5[4]
TREE = TokenTree.from_parents([5, 6, 7, 8, 9, 4], [-1, 0, -1, 1, 2, 4])


def argmax_table(root, **node_argmax):
    table = np.full(TREE.size + 1, 0, dtype=np.int64)
    table[0] = root
    for key, val in node_argmax.items():
        table[int(key[1:]) + 1] = val
    return table


def test_sibling_branch_wins():
    """The second root child is right: its whole branch is accepted."""
    verdict = greedy_walk(TREE, argmax_table(7, n2=9, n4=4, n5=1))
    assert verdict.accepted_nodes == (2, 4, 5)
    assert verdict.bonus_token == 1


def test_shorter_branch_is_accepted_when_the_longer_one_is_wrong():
    verdict = greedy_walk(TREE, argmax_table(5, n0=6, n1=3))
    assert verdict.accepted_nodes == (0, 1)
    assert verdict.bonus_token == 3


def test_nothing_accepted():
    verdict = greedy_walk(TREE, argmax_table(11))
    assert verdict.accepted_nodes == ()
    assert verdict.bonus_token == 11


def test_empty_tree_is_a_plain_step():
    verdict = greedy_walk(TokenTree.empty(), np.array([42]))
    assert verdict.accepted_nodes == () and verdict.bonus_token == 42


def test_verifier_applies_repetition_penalty_along_each_path():
    """Penalties use the node's own path: a token on a sibling branch is not penalised."""
    tree = TokenTree.from_parents([1, 2], [-1, -1])  # two root children
    vocab = 4
    logits = torch.zeros(3, vocab, dtype=torch.float64)
    logits[0] = torch.tensor([0.0, 3.0, 2.9, 0.0])  # root: argmax 1 without penalty
    logits[1] = torch.tensor([0.0, 2.0, 1.9, 0.0])  # after node 0 (token 1): 1 is penalised -> 2 wins
    logits[2] = torch.tensor([0.0, 2.0, 1.9, 0.0])  # after node 1 (token 2): 1 wins, 2 penalised
    sampling = SamplingParams(repetition_penalty=2.0)
    process = LogitsPipeline(sampling, np.array([0], dtype=np.int64))
    verdict = GreedyVerifier().verify(tree, logits, sampling, process, None, 0)
    assert verdict.accepted_nodes == (0,)
    assert verdict.bonus_token == 2
