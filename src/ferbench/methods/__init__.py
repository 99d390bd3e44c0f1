"""Training methods: one file each, registered by ``name``; see base.py for the interface,
registry.py for finding a class by name. The losses and samplers the methods share live beside
them (losses, ssl_losses, clip_sampling, triplet_sampling, face_regions)."""

from ferbench.methods.base import Batch, Method, TaskInfo
from ferbench.methods.registry import get_method, method_class_name, method_names

__all__ = ["Batch", "Method", "TaskInfo", "get_method", "method_class_name", "method_names"]
