"""Parameters as one array or as nested dicts, lists and tuples of arrays.

``flatten`` turns a tree into its leaves (in a fixed order), a *structure* that can be
compared for equality, and a readable path for each leaf (``params['w']``, ``grads[1]``)
that error messages use.  ``unflatten`` rebuilds a tree of the same structure.
"""

from __future__ import annotations

from typing import Any, Callable

from . import _array

__all__ = ["flatten", "unflatten", "tree_map", "describe"]

# A structure is a hashable nested tuple:
#   ("leaf",) | ("dict", (key, ...), (child, ...)) | ("list", (child, ...)) | ("tuple", (child, ...))
Structure = tuple


def flatten(tree: Any, name: str = "params") -> tuple[list[Any], Structure, list[str]]:
    """Leaves, structure and leaf paths of ``tree``.

    Dict keys keep their insertion order (so that ``{'w': .., 'b': ..}`` and
    ``{'b': .., 'w': ..}`` are different structures and a mismatch is reported, never a
    silent reordering).  Raises TypeError for anything that is neither an array nor a
    dict/list/tuple of them.
    """
    leaves: list[Any] = []
    paths: list[str] = []
    structure = _walk(tree, name, leaves, paths)
    if not leaves:
        raise ValueError(f"{name} holds no arrays; an update rule needs at least one parameter array")
    return leaves, structure, paths


# The recursions are module functions, not closures: a closure that calls itself is a reference
# cycle (function -> cell -> function), and the leaves it captured -- a step's input arrays --
# would then live until the garbage collector's next pass instead of until their last use.


def _walk(node: Any, path: str, leaves: list[Any], paths: list[str]) -> Structure:
    if isinstance(node, dict):
        keys = tuple(node.keys())
        return ("dict", keys, tuple(_walk(node[k], f"{path}[{k!r}]", leaves, paths) for k in keys))
    if isinstance(node, (list, tuple)):
        kind = "list" if isinstance(node, list) else "tuple"
        return (kind, tuple(_walk(child, f"{path}[{i}]", leaves, paths) for i, child in enumerate(node)))
    if _array.is_array(node):
        leaves.append(node)
        paths.append(path)
        return ("leaf",)
    raise TypeError(
        f"{path} must be an array or a dict/list/tuple of arrays; got {type(node).__name__}"
    )


def unflatten(structure: Structure, leaves: list[Any]) -> Any:
    """Rebuild a tree of ``structure`` from ``leaves`` (in flatten's order)."""
    return _build(structure, iter(leaves))


def _build(node: Structure, it) -> Any:
    kind = node[0]
    if kind == "leaf":
        return next(it)
    if kind == "dict":
        return {k: _build(child, it) for k, child in zip(node[1], node[2])}
    children = [_build(child, it) for child in node[1]]
    return children if kind == "list" else tuple(children)


def tree_map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Apply ``fn`` leaf by leaf to trees of one structure."""
    leaves, structure, _ = flatten(tree)
    others = [flatten(r)[0] for r in rest]
    return unflatten(structure, [fn(*xs) for xs in zip(leaves, *others)])


def describe(structure: Structure) -> str:
    """A short human description of a structure, for error messages."""
    kind = structure[0]
    if kind == "leaf":
        return "array"
    if kind == "dict":
        return "dict(" + ", ".join(f"{k!r}: {describe(c)}" for k, c in zip(structure[1], structure[2])) + ")"
    inner = ", ".join(describe(c) for c in structure[1])
    return f"[{inner}]" if kind == "list" else f"({inner}{',' if len(structure[1]) == 1 else ''})"
