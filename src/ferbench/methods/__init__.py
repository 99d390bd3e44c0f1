"""Training methods: one file each, registered by ``name``; see base.py for the interface."""

from ferbench.methods.base import (Batch, Method, TaskInfo, get_method, method_class_name,
                                   method_names)

__all__ = ["Batch", "Method", "TaskInfo", "get_method", "method_class_name", "method_names"]
