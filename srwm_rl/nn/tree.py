"""One tree-map for observations, which are an array or tensor, or a dict (any pytree) of them.

A single array skips the tree walk: rollouts call this at every step.
"""
from __future__ import annotations

from typing import Any, Callable

import optree


def tree_map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """``fn`` applied leaf by leaf to ``tree`` (and the same leaves of ``rest``), in the same structure."""
    if not isinstance(tree, (dict, list, tuple)):
        return fn(tree, *rest)
    return optree.tree_map(fn, tree, *rest)
