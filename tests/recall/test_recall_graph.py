"""Spreading activation on a hand-built graph: the numbers a reader can check on paper."""

from __future__ import annotations

import numpy as np
import pytest

from codex_dreams.retrieval.graph import AssociationGraph


def graph(n: int, links: list[tuple[int, int, float, int]]) -> AssociationGraph:
    """Undirected links (a, b, strength, type code) as the snapshot stores them: CSR, strongest first."""
    src = np.array([a for a, b, _, _ in links] + [b for a, b, _, _ in links], dtype=np.int64)
    dst = np.array([b for a, b, _, _ in links] + [a for a, b, _, _ in links], dtype=np.int64)
    weight = np.array([w for *_, w, _ in links] * 2, dtype=np.float32)
    types = np.array([t for *_, t in links] * 2, dtype=np.int8)
    order = np.lexsort((-weight, src))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    return AssociationGraph({"indptr": indptr, "indices": dst[order].astype(np.int32), "weights": weight[order],
                             "types": types[order]}, ["hebbian", "semantic", "temporal", "creative"])


# 0 -0.5- 1 -0.5- 2 ; 0 -1.0- 3 ; 4 isolated ; 5 -0.25- 2
G = graph(6, [(0, 1, 0.5, 0), (1, 2, 0.5, 2), (0, 3, 1.0, 3), (2, 5, 0.25, 1)])


def test_one_hop_delivers_seed_activation_times_strength_times_decay():
    activation, paths = G.spread({0: 0.8}, hops=1, decay=0.5, fan_out=10, frontier=10)
    assert activation == pytest.approx({1: 0.8 * 0.5 * 0.5, 3: 0.8 * 1.0 * 0.5})
    assert paths[3][0].links[0].link_type == "creative" and paths[3][0].seed == 0


def test_two_hops_decay_twice_and_never_return_to_a_seed():
    activation, paths = G.spread({0: 1.0}, hops=2, decay=0.5, fan_out=10, frontier=10)
    assert activation[2] == pytest.approx(0.25 * 0.5 * 0.5)  # a1(1) = 0.25, then x 0.5 x 0.5
    assert 0 not in activation  # 1 -> 0 would return to the seed
    assert [(link.source, link.target, link.link_type) for link in paths[2][0].links] == [
        (0, 1, "hebbian"), (1, 2, "temporal")]
    assert 5 not in activation  # three hops away


def test_activation_from_several_seeds_adds_up_and_fan_out_limits_the_links_followed():
    activation, _ = G.spread({1: 1.0, 5: 1.0}, hops=1, decay=1.0, fan_out=10, frontier=10)
    assert activation[2] == pytest.approx(0.5 + 0.25)
    narrow, _ = G.spread({0: 1.0}, hops=1, decay=1.0, fan_out=1, frontier=10)
    assert narrow == {3: 1.0}  # only the strongest link of node 0


def test_no_seeds_or_no_links_spread_nothing():
    assert G.spread({}, hops=2, decay=0.5, fan_out=10, frontier=10) == ({}, {})
    assert G.spread({4: 1.0}, hops=2, decay=0.5, fan_out=10, frontier=10) == ({}, {})
    empty = graph(3, [])
    assert not empty and empty.spread({0: 1.0}, hops=2, decay=0.5, fan_out=10, frontier=10) == ({}, {})
