"""Synthetic data generators and file input/output."""

from .attributes import AttributeImages, make_attribute_images, render_attribute_images
from .io import load_sequences
from .latents import TaskLatents, make_task_latents
from .sequences import TaskSequences, make_task_sequences, random_segment_assignment
from .video import AgentVideo, make_agent_video

__all__ = [
    "AgentVideo",
    "AttributeImages",
    "TaskLatents",
    "TaskSequences",
    "load_sequences",
    "make_attribute_images",
    "make_agent_video",
    "make_task_latents",
    "make_task_sequences",
    "random_segment_assignment",
    "render_attribute_images",
]
