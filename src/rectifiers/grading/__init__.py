"""Graded exercises (guide: see below)."""

from .item import Case, FunctionItem, Item, ManualItem, ModuleItem, ModuleSpec, ValueItem
from .public import check

__all__ = ["Case", "FunctionItem", "Item", "ManualItem", "ModuleItem", "ModuleSpec", "ValueItem", "check"]
