"""Synthetic data generators and file input/output."""

from .io import load_sequences
from .latents import TaskLatents, make_task_latents
from .sequences import TaskSequences, make_task_sequences, random_segment_assignment

__all__ = [
    "TaskLatents",
    "TaskSequences",
    "load_sequences",
    "make_task_latents",
    "make_task_sequences",
    "random_segment_assignment",
]
