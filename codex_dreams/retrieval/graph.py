"""Associative recall: spreading activation over the association graph (CSR arrays from the snapshot).

The best preliminary hits of a query are the seeds; a seed's activation is its preliminary score (dense,
lexical and strength fused, in [0, 1]). Activation flows along links, strongest links first (at most `fan_out` per
node), and each hop keeps `hop_decay` x the link's strength of what arrives:

    hop 1:  a(j) += a(seed) * w(seed, j) * decay
    hop 2:  a(k) += a1(j) * w(j, k) * decay        for the `frontier` most active non-seed hop-1 nodes j

Activation converging on a memory from several seeds adds up (clipped to 1 as a signal). Seeds receive
activation only from other seeds' direct links. Every contribution keeps its path, so an answer can say which
links brought a memory.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

MIN_CONTRIBUTION = 1e-4


@dataclass(frozen=True)
class Link:
    source: int  # row ids
    target: int
    link_type: str
    strength: float


@dataclass(frozen=True)
class ActivationPath:
    seed: int
    activation: float  # what this path delivered to its last node
    links: tuple[Link, ...]


class AssociationGraph:
    def __init__(self, arrays, link_types: list[str]) -> None:
        self.indptr = arrays["indptr"]
        self.indices = arrays["indices"]
        self.weights = arrays["weights"]
        self.types = arrays["types"]
        self.link_types = list(link_types) or ["unknown"]
        self.links = len(self.indices) // 2

    def __bool__(self) -> bool:
        return len(self.indices) > 0

    def neighbours(self, row: int, fan_out: int):
        start = int(self.indptr[row])
        end = min(int(self.indptr[row + 1]), start + fan_out)
        return (self.indices[start:end].tolist(), self.weights[start:end].tolist(),
                self.types[start:end].tolist())

    def _type(self, code: int) -> str:
        return self.link_types[code] if 0 <= code < len(self.link_types) else "unknown"

    def spread(self, seeds: dict[int, float], *, hops: int, decay: float, fan_out: int, frontier: int,
               type_factors: dict[str, float] | None = None
               ) -> tuple[dict[int, float], dict[int, list[ActivationPath]]]:
        """Activation received through links per row, and the paths that delivered it (strongest first).
        `type_factors` scales what a link of a type carries (default 1)."""
        factor_of_code = [float((type_factors or {}).get(name, 1.0)) for name in self.link_types]

        def carried(weight: float, code: int) -> float:
            return weight * (factor_of_code[code] if 0 <= code < len(factor_of_code) else 1.0)

        activation: dict[int, float] = defaultdict(float)
        paths: dict[int, list[ActivationPath]] = defaultdict(list)
        if not self or not seeds or hops < 1:
            return {}, {}
        for seed, seed_activation in seeds.items():
            targets, weights, types = self.neighbours(seed, fan_out)
            for target, weight, code in zip(targets, weights, types):
                delivered = seed_activation * carried(weight, code) * decay
                if delivered < MIN_CONTRIBUTION:
                    continue
                activation[target] += delivered
                paths[target].append(
                    ActivationPath(seed, delivered, (Link(seed, target, self._type(code), weight),)))
        if hops >= 2:
            first = {row: value for row, value in activation.items() if row not in seeds}
            spreaders = sorted(first, key=lambda row: (-first[row], row))[:frontier]
            for middle in spreaders:
                via = max(paths[middle], key=lambda p: p.activation)
                targets, weights, types = self.neighbours(middle, fan_out)
                for target, weight, code in zip(targets, weights, types):
                    if target in seeds or target == middle:
                        continue
                    delivered = first[middle] * carried(weight, code) * decay
                    if delivered < MIN_CONTRIBUTION:
                        continue
                    activation[target] += delivered
                    paths[target].append(ActivationPath(
                        via.seed, delivered, via.links + (Link(middle, target, self._type(code), weight),)))
        for row in paths:
            paths[row].sort(key=lambda p: (-p.activation, len(p.links)))
        return dict(activation), dict(paths)


def load_graph(arrays, link_types) -> AssociationGraph:
    return AssociationGraph({name: np.asarray(arrays[name]) for name in ("indptr", "indices", "weights", "types")},
                            link_types)
