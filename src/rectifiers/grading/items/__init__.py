"""The trusted registry of exercise items, one module per notebook.

Every module here named ``nbNN_<topic>`` (for example ``nb01_motivation``) defines
``NOTEBOOK = "NN_<topic>"`` (the notebook's file name without ``.ipynb``) and
``ITEMS = [...]`` (its ``Item`` objects, in notebook order).
They are collected into ``REGISTRY`` when this package is imported; a module that breaks
these rules stops the import with a ``RegistryError`` naming it.

``EXAMPLES`` holds the small example set of ``rectifiers.grading.items.examples`` (the
grader's own test notebooks use it); it is not part of ``REGISTRY``, so the class's
notebooks are graded against the course items only.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable, Mapping, Sequence

from ..item import Item

MODULE_NAME = re.compile(r"^nb(\d\d)_([a-z0-9_]+)$")


class RegistryError(ValueError):
    """An item module breaks the registry's rules."""


def _collect(modules: Iterable[tuple[str, object]]) -> dict[str, list[Item]]:
    registry: dict[str, list[Item]] = {}
    seen: dict[str, str] = {}
    for module_name, module in modules:
        notebook = getattr(module, "NOTEBOOK", None)
        items = getattr(module, "ITEMS", None)
        if not isinstance(notebook, str):
            raise RegistryError(f"{module_name} must define NOTEBOOK as a str, got {notebook!r}")
        if not isinstance(items, Sequence) or not all(isinstance(item, Item) for item in items):
            raise RegistryError(f"{module_name} must define ITEMS as a list of Item objects")
        if notebook in registry:
            raise RegistryError(f"{module_name}: notebook {notebook!r} is registered twice")
        for item in items:
            if item.id in seen:
                raise RegistryError(
                    f"{module_name}: item id {item.id!r} is already used in {seen[item.id]}"
                )
            seen[item.id] = module_name
        registry[notebook] = list(items)
    return registry


def _discover() -> dict[str, list[Item]]:
    modules = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        match = MODULE_NAME.match(info.name)
        if not match:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        expected = f"{match.group(1)}_{match.group(2)}"
        if getattr(module, "NOTEBOOK", None) != expected:
            raise RegistryError(f"{__name__}.{info.name} must define NOTEBOOK = {expected!r}")
        modules.append((f"{__name__}.{info.name}", module))
    return _collect(modules)


#: ``notebook name -> items`` for the course's notebooks (``"01_motivation" -> [...]``).
REGISTRY: dict[str, list[Item]] = _discover()

from . import examples as _examples  # noqa: E402 - after REGISTRY so a course module cannot shadow it

#: The example set, ``{"00_examples": [...]}``, which is not graded with the class.
EXAMPLES: dict[str, list[Item]] = _collect([(_examples.__name__, _examples)])
if set(EXAMPLES) & set(REGISTRY) or {i.id for i in EXAMPLES[_examples.NOTEBOOK]} & {
    i.id for items in REGISTRY.values() for i in items
}:
    raise RegistryError("the example set reuses a course notebook name or item id")


def combined(*registries: Mapping[str, Sequence[Item]]) -> dict[str, list[Item]]:
    """Merge registries (for grading the examples together with the course notebooks)."""
    merged: dict[str, list[Item]] = {}
    for registry in registries:
        for notebook, items in registry.items():
            if notebook in merged:
                raise RegistryError(f"notebook {notebook!r} appears in two registries")
            merged[notebook] = list(items)
    return merged


def find_item(item_id: str) -> Item:
    """The item with this id, from the course registry or the example set (``KeyError`` if none)."""
    for registry in (REGISTRY, EXAMPLES):
        for items in registry.values():
            for item in items:
                if item.id == item_id:
                    return item
    raise KeyError(item_id)
