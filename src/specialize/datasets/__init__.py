"""Synthetic data generators and file input/output."""

from .io import load_sequences
from .sequences import TaskSequences, make_task_sequences, random_segment_assignment

__all__ = ["TaskSequences", "load_sequences", "make_task_sequences", "random_segment_assignment"]
