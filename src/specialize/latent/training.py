"""Losses and the training loop of :class:`specialize.SparseTaskVAE`.

Training runs in stages (a warm-up without penalty, a penalised path, a refit with the
support fixed); each stage runs mini-batch Adam with early stopping on a held-out split and
keeps the best epoch's weights. Progress and checkpoints are per epoch.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from .model import SparseTaskVAEModule


@dataclass
class TaskData:
    """Standardised observations and encoded targets on one device.

    x : tensor (n, obs_dim), float32
    y : tensor (n, n_tasks), float32; regression targets standardised, class indices as
        floats, NaN where a label is missing.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, index) -> TaskData:
        return TaskData(self.x[index], self.y[index])


@dataclass
class StageSettings:
    """One training stage: its penalty weight and its budget."""

    name: str
    penalty: float
    max_epochs: int
    patience: int
    learning_rate: float
    batch_size: int
    beta: float
    task_weight: float = 1.0


@dataclass
class History:
    """Per-epoch losses of every stage (JSON-friendly lists of dicts)."""

    epochs: list = field(default_factory=list)

    def add(self, **record) -> None:
        self.epochs.append({k: _plain(v) for k, v in record.items()})


def loss_terms(
    module: SparseTaskVAEModule, batch: TaskData, classification: list[bool], sample: bool = True
):
    """Mean reconstruction NLL, mean KL and the per-task mean losses (n_tasks,) of a batch.

    The reconstruction is a Gaussian likelihood with one learned noise scale; a regression
    task's loss is half its squared error (targets are standardised), a classification
    task's the cross-entropy. Missing labels (NaN) drop only their own term; a task with no
    label in the batch contributes 0.
    """
    mu, logvar, _, reconstruction, outputs = module(batch.x, sample=sample)
    d = batch.x.shape[1]
    noise = module.log_noise
    recon = 0.5 * ((batch.x - reconstruction) ** 2).sum(1) * torch.exp(-2 * noise) + d * (
        noise + 0.5 * math.log(2 * math.pi)
    )
    kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(1)
    labelled = ~torch.isnan(batch.y)
    per_sample = []
    for k, out in enumerate(outputs):
        if classification[k]:
            target = batch.y[:, k].nan_to_num(-1.0).long()  # -1: ignored by cross_entropy
            per_sample.append(F.cross_entropy(out, target, ignore_index=-1, reduction="none"))
        else:
            per_sample.append(0.5 * (out[:, 0] - batch.y[:, k].nan_to_num()) ** 2)
    per_sample = torch.stack(per_sample, 1) * labelled  # (batch, n_tasks), 0 where unlabelled
    task_losses = per_sample.sum(0) / labelled.sum(0).clamp_min(1)
    return recon.mean(), kl.mean(), task_losses


def evaluate(
    module: SparseTaskVAEModule, data: TaskData, classification: list[bool], batch_size: int
) -> dict:
    """Losses of ``data`` at the posterior means (no sampling), averaged over batches."""
    module.eval()
    totals = None
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            part = data.subset(slice(start, start + batch_size))
            recon, kl, tasks = loss_terms(module, part, classification, sample=False)
            labelled = (~torch.isnan(part.y)).sum(0).to(tasks.dtype)
            terms = (recon * len(part), kl * len(part), tasks * labelled, labelled)
            totals = (
                terms
                if totals is None
                else tuple(a + b for a, b in zip(totals, terms, strict=True))
            )
    module.train()
    recon, kl, tasks, labelled = totals
    return {
        "recon": float(recon) / len(data),
        "kl": float(kl) / len(data),
        "tasks": (tasks / labelled.clamp_min(1)).cpu().tolist(),
    }


def run_stage(
    module: SparseTaskVAEModule,
    train: TaskData,
    valid: TaskData,
    stage: StageSettings,
    classification: list[bool],
    generator: torch.Generator,
    history: History,
    on_epoch=None,
    start_epoch: int = 0,
    optimizer_state=None,
    best=None,
):
    """Train ``module`` for one stage with early stopping; restore the best epoch's weights.

    The monitored quantity is the validation objective of the stage (reconstruction,
    beta * KL, task_weight * task losses and the penalty). ``on_epoch(epoch, optimizer,
    best)`` is called after every epoch (progress, checkpoints); ``start_epoch``,
    ``optimizer_state`` and ``best`` resume an interrupted stage. Returns the best
    validation record.
    """
    optimizer = torch.optim.Adam(module.parameters(), lr=stage.learning_rate)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    best = best or {"objective": math.inf, "epoch": -1, "state": None, "record": None}
    n = len(train)
    for epoch in range(start_epoch, stage.max_epochs):
        order = torch.randperm(n, generator=generator).to(train.x.device)
        for start in range(0, n, stage.batch_size):
            batch = train.subset(order[start : start + stage.batch_size])
            recon, kl, tasks = loss_terms(module, batch, classification)
            loss = recon + stage.beta * kl + stage.task_weight * tasks.sum()
            if stage.penalty > 0:
                loss = loss + stage.penalty * module.penalty()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        record = evaluate(module, valid, classification, 4096)
        penalty = float(module.penalty().detach())
        objective = record["recon"] + stage.beta * record["kl"]
        objective += stage.task_weight * sum(record["tasks"])
        objective += stage.penalty * penalty
        record.update(stage=stage.name, epoch=epoch, objective=objective, penalty=penalty)
        history.add(**record)
        if objective < best["objective"]:
            best = {
                "objective": objective,
                "epoch": epoch,
                "state": copy.deepcopy(module.state_dict()),
                "record": record,
            }
        stop = epoch - best["epoch"] >= stage.patience
        if on_epoch is not None:
            on_epoch(epoch, optimizer, best, stop or epoch == stage.max_epochs - 1)
        if stop:
            break
    if best["state"] is not None:
        module.load_state_dict(best["state"])
    return best["record"]


def _plain(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    return value
