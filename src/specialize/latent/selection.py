"""Training stages of a SparseTaskVAE fit and the choice of each task's support.

- ``sparsity=0``: one unpenalised stage; supports by the threshold rule (a superset).
- With ``align`` (the default), every penalised fit first rotates the warmed-up latent so
  that the directions each task reads become coordinates (:mod:`.alignment`) and retrains
  the heads in an unpenalised "aligned" stage; the penalty then starts from that model.
- ``sparsity=lambda``: an unpenalised warm-up, a penalised stage, then a refit with the
  thresholded supports fixed and no penalty (it removes the l1 shrinkage of the kept
  coordinates).
- ``sparsity="auto"`` with ``selection="moments"`` (the default): after the warm-up (and
  the alignment), each task's support is every coordinate whose share of the task head's
  gradient moment (diagonal of C_k over its trace, :func:`moment_shares`) is at least
  ``threshold`` times the task's largest share; the model is then refitted with those
  supports fixed and no penalty. No penalty is trained.
- Every refit (the supports fixed) weighs the task losses by ``task_weight`` against the
  ELBO: the ELBO does not prefer a basis, so only the task terms confine a task's group to
  its support, and at weight 1 they are small beside the reconstruction of every
  observed dimension.
- ``sparsity="auto"`` with ``selection="path"``: after the warm-up, the penalty rises along
  ``sparsity_path``; each weight's thresholded supports are refitted (fixed, unpenalised)
  from that weight's model and scored by their held-out task losses. The selected weight is
  the largest whose refit keeps every task's held-out loss within ``(1 + tolerance)`` of
  that task's best over the path and the warm-up (widened to the smallest worst ratio of any
  weight when the tasks' best losses lie at different weights); its refitted model is the
  result.
"""

from __future__ import annotations

import copy
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..ci._backend import torch_module
from .alignment import alignment_rotation, rotate_latent, task_gradient_moments
from .training import History, StageSettings, run_stage


@dataclass
class SelectionResult:
    history: list
    path: list
    sparsity: float


def threshold_support(mask: np.ndarray, threshold: float) -> np.ndarray:
    """Bool (n_tasks, latent_dim): entries at least ``threshold`` times their row's largest.

    A row whose entries are all zero keeps its largest entry, so that no task is left
    without a coordinate.
    """
    mask = np.abs(np.asarray(mask, dtype=float))
    top = mask.max(axis=1, keepdims=True)
    support = mask >= threshold * top
    support &= top > 0
    empty = ~support.any(axis=1)
    support[empty, mask[empty].argmax(axis=1)] = True
    return support


def moment_shares(moments: np.ndarray) -> np.ndarray:
    """Each coordinate's share of each task's gradient moment: (n_tasks, latent_dim).

    Row k is the diagonal of C_k = E[grad f_k grad f_k^T] divided by its trace (zeros for a
    head that ignores z). In the aligned basis C_k is close to diagonal, and its diagonal is
    how much of the head's (squared) sensitivity each coordinate carries.
    """
    diagonal = np.clip(np.diagonal(moments, axis1=1, axis2=2), 0.0, None)
    total = diagonal.sum(axis=1, keepdims=True)
    return np.divide(diagonal, total, out=np.zeros_like(diagonal), where=total > 0)


def select_supports(
    module, train, valid, *, params: dict, classification, seed: int, progress, checkpoint
) -> SelectionResult:
    """Train ``module`` in stages (module docstring) and leave the selected model in it."""
    torch = torch_module()
    history = History()
    generator = torch.Generator().manual_seed(seed)

    def settings(name: str, penalty: float, epochs: int, task_weight: float = 1.0):
        return StageSettings(
            name,
            penalty,
            epochs,
            params["patience"],
            params["learning_rate"],
            params["batch_size"],
            params["beta"],
            task_weight,
        )

    def refit(name: str, epochs: int) -> StageSettings:
        """A stage with the supports fixed: no penalty, the task losses weighted up."""
        return settings(name, 0.0, epochs, task_weight=params["task_weight"])

    runner = _StageRunner(module, train, valid, classification, generator, history, checkpoint)
    epochs = params["epochs"]
    sparsity = params["sparsity"]
    with _progress(progress) as bar:
        runner.bar = bar
        warm = runner.run(settings("warm-up", 0.0, epochs))
        if sparsity == 0:
            _fix_support(module, params["threshold"], gate_open=False)
            return SelectionResult(history.epochs, [], 0.0)
        if params["align"]:
            rotate_latent(module, alignment_rotation(task_gradient_moments(module, train.x)))
            warm = runner.run(settings("aligned", 0.0, max(10, epochs // 4)))
        if sparsity == "auto" and params["selection"] == "moments":
            shares = moment_shares(task_gradient_moments(module, train.x))
            support = threshold_support(shares, params["threshold"])
            module.support.copy_(torch.as_tensor(support, device=module.mask.device))
            record = runner.run(refit("refit", max(10, epochs // 2)))
            entry = _path_entry(0.0, module, record)
            entry.update(rule="moments", shares=shares.tolist(), selected=True)
            return SelectionResult(history.epochs, [entry], 0.0)
        if sparsity != "auto":
            runner.run(settings(f"penalty {sparsity:g}", sparsity, epochs))
            _fix_support(module, params["threshold"], gate_open=True)
            runner.run(refit("refit", epochs))
            return SelectionResult(history.epochs, [], float(sparsity))

        warm_state = copy.deepcopy(module.state_dict())
        path = [_path_entry(0.0, module, warm)]
        refits = {}
        trunk = warm_state
        for weight in params["sparsity_path"]:
            module.load_state_dict(trunk)
            runner.run(settings(f"penalty {weight:g}", weight, max(10, epochs // 4)))
            trunk = copy.deepcopy(module.state_dict())
            _fix_support(module, params["threshold"], gate_open=True)
            record = runner.run(refit(f"refit {weight:g}", max(10, epochs // 2)))
            refits[weight] = copy.deepcopy(module.state_dict())
            path.append(_path_entry(weight, module, record))
            module.support.fill_(True)
        chosen = _choose(path, params["tolerance"])
        if chosen["sparsity"] == 0.0:
            module.load_state_dict(warm_state)
            _fix_support(module, params["threshold"], gate_open=False)
        else:
            module.load_state_dict(refits[chosen["sparsity"]])
        for entry in path:
            entry["selected"] = entry is chosen
        return SelectionResult(history.epochs, path, chosen["sparsity"])


def _choose(path: list, tolerance: float) -> dict:
    """The largest weight whose every task loss is within ``1 + tolerance`` of that task's best.

    When the tasks' best losses lie at different weights and no entry keeps all of them within
    the tolerance, the tolerance widens to the smallest worst ratio any entry reaches.
    """
    losses = np.array([entry["valid_task_losses"] for entry in path])
    best = np.maximum(losses.min(axis=0), np.finfo(float).tiny)
    worst = (losses / best).max(axis=1)  # each entry's largest ratio to a task's best
    allowed = max(1.0 + tolerance, worst.min())
    feasible = [entry for entry, w in zip(path, worst, strict=True) if w <= allowed]
    return max(feasible, key=lambda entry: entry["sparsity"])


def _path_entry(weight: float, module, record: dict) -> dict:
    support = module.support.cpu().numpy()
    return {
        "sparsity": float(weight),
        "supports": [np.flatnonzero(row).tolist() for row in support],
        "valid_task_losses": list(record["tasks"]),
        "valid_recon": record["recon"],
        "valid_kl": record["kl"],
    }


def _fix_support(module, threshold: float, gate_open: bool) -> None:
    """Fix the thresholded supports; re-open hard-concrete gates inside them for the refit."""
    torch = torch_module()
    with torch.no_grad():
        mask = module.effective_mask().detach().abs().cpu().numpy()
        support = torch.as_tensor(threshold_support(mask, threshold), device=module.mask.device)
        module.support.copy_(support)
        if gate_open and module.gate == "hard-concrete":
            module.mask.copy_(torch.where(support, torch.full_like(module.mask, 6.0), module.mask))


class _StageRunner:
    """Runs named stages, skipping finished ones and resuming interrupted ones from the
    checkpoint; the module's support is saved with its weights."""

    def __init__(self, module, train, valid, classification, generator, history, checkpoint):
        self.module = module
        self.train = train
        self.valid = valid
        self.classification = classification
        self.generator = generator
        self.history = history
        self.checkpoint = checkpoint
        self.bar = None

    def run(self, stage: StageSettings) -> dict:
        ckpt = self.checkpoint
        done = ckpt.finished(stage.name) if ckpt is not None else None
        if done is not None:
            self.module.load_state_dict(done["state"])
            self.generator.set_state(done["generator"])
            _set_rng_states(done["rng"])
            self.history.epochs[:] = done["history"]
            return done["record"]
        resume = ckpt.current(stage.name) if ckpt is not None else None
        start, optimizer_state, best = 0, None, None
        if resume is not None:
            self.module.load_state_dict(resume["state"])
            self.generator.set_state(resume["generator"])
            _set_rng_states(resume["rng"])
            self.history.epochs[:] = resume["history"]
            start, optimizer_state, best = resume["epoch"] + 1, resume["optimizer"], resume["best"]
        if self.bar is not None:
            self.bar.start(stage.name, stage.max_epochs, start)

        def on_epoch(epoch, optimizer, best_so_far, last):
            if self.bar is not None:
                self.bar.advance(self.history.epochs[-1])
            if ckpt is not None and not last:
                ckpt.save_progress(
                    stage.name,
                    epoch=epoch,
                    state=copy.deepcopy(self.module.state_dict()),
                    optimizer=copy.deepcopy(optimizer.state_dict()),
                    generator=self.generator.get_state(),
                    rng=_rng_states(),
                    history=list(self.history.epochs),
                    best=best_so_far,
                )

        record = run_stage(
            self.module,
            self.train,
            self.valid,
            stage,
            self.classification,
            self.generator,
            self.history,
            on_epoch=on_epoch,
            start_epoch=start,
            optimizer_state=optimizer_state,
            best=best,
        )
        if ckpt is not None:
            ckpt.save_finished(
                stage.name,
                state=copy.deepcopy(self.module.state_dict()),
                generator=self.generator.get_state(),
                rng=_rng_states(),
                history=list(self.history.epochs),
                record=record,
            )
        return record


def _rng_states() -> dict:
    """PyTorch's global generators (the VAE's sampling noise and the gates draw from them)."""
    torch = torch_module()
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    torch = torch_module()
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class _Bar:
    """Epochs of the current stage, with its latest validation losses."""

    def __init__(self, progress):
        self.progress = progress
        self.task = None

    def start(self, name: str, total: int, completed: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(name, total=total, completed=completed, losses="")

    def advance(self, record: dict) -> None:
        losses = f"recon {record['recon']:.2f} kl {record['kl']:.2f}"
        if "tasks" in record:
            losses += " tasks " + " ".join(f"{v:.3f}" for v in record["tasks"])
        self.progress.update(self.task, advance=1, losses=losses)


@contextmanager
def _progress(enabled):
    show = sys.stderr.isatty() if enabled is None else bool(enabled)
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs {task.fields[losses]}"),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield _Bar(progress)
