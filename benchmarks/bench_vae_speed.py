"""Training speed of ``SparseTaskVAE`` against a plain PyTorch loop over the same model.

The question: what do the estimator's abstractions cost (validation, target encoding, the
per-epoch validation pass, best-state tracking, NaN-aware losses, the support step)?

- **ours**: ``SparseTaskVAE(latent_dim, sparsity=0, epochs=E, patience=E,
  validation_fraction=0.2).fit(X, G)``, the whole call. ``patience=E`` rules out early
  stopping, so every fit runs E epochs (checked against ``history_``).
- **plain**: a hand-written loop over the same ``SparseTaskVAEModule`` (the estimator's
  default hidden and head sizes, gate "l1", same seed, so the same initial weights): the same
  loss written inline (Gaussian reconstruction with a learned log-noise, KL, half the squared
  error of each standardised target), Adam with the same learning rate, the same batch size,
  epochs and training-split size, data already on the device, no validation pass, no
  checkpoint, no progress bar.

Samples/s = n_train * epochs / wall seconds. Each of ``--repeats`` rounds runs ours, then the
plain loop (so a burst of load on a shared machine lands on both); medians are reported, with
the ratio ours / plain of the median wall times and the median of the rounds' own ratios. Both
trained models are scored on the same held-out split (half squared error per task, at the
posterior means) after the clock stops, to show that the plain loop does the same work. On
CUDA the clock is read after a synchronise. ``--profile`` adds where one fit of ours spends its
time (cProfile).

    python benchmarks/bench_vae_speed.py --threads 2 --epochs 10 --repeats 3

Raw figures go to ``--out`` (default ``benchmarks/results/bench_vae_speed.json``).
"""

from __future__ import annotations

import argparse
import cProfile
import math
import pstats
import time
from pathlib import Path

import numpy as np
import torch

from _environment import ROOT, load_average, run_header, write_results
from specialize.datasets import make_task_latents
from specialize.latent import SparseTaskVAE
from specialize.latent.model import SparseTaskVAEModule

#: Share held out by the estimator (and left out of the plain loop's training split).
VALIDATION_FRACTION = 0.2
#: Steps of a fit reported by ``--profile``: label -> (file suffix, function name).
PROFILED = {
    "training batches (run_stage, all)": ("latent/training.py", "run_stage"),
    "loss terms, training and validation": ("latent/training.py", "loss_terms"),
    "validation pass (evaluate)": ("latent/training.py", "evaluate"),
    "best-state copies (deepcopy)": ("copy.py", "deepcopy"),
    "backward": ("torch/_tensor.py", "backward"),
    "Adam step": ("torch/optim/optimizer.py", "wrapper"),
    "zero_grad": ("torch/optim/optimizer.py", "zero_grad"),
    "forward of the module": ("latent/model.py", "forward"),
    "spectral norm of the heads": ("parametrizations.py", "forward"),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="samples (train and validation)")
    p.add_argument("--obs-dim", type=int, default=12)
    p.add_argument("--latent-dim", type=int, default=6)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (ours, then plain)")
    p.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads(N); torch's default when left out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="where one fit of ours spends its time")
    p.add_argument("--out", type=Path,
                   default=ROOT / "benchmarks" / "results" / "bench_vae_speed.json")
    return p.parse_args(argv)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: this PyTorch build sees no CUDA device")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation row indices, drawn as ``SparseTaskVAE.fit`` draws them."""
    order = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, int(round(fraction * n)))
    return order[n_valid:], order[:n_valid]


def standardised_tensors(X, G, rows, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of X (n, D) and G (n, n_tasks), each standardised with the statistics of all n
    samples (as the estimator does), as float32 tensors on ``device``."""
    x = (X - X.mean(axis=0)) / X.std(axis=0)
    y = (G - G.mean(axis=0)) / G.std(axis=0)
    as_tensor = lambda a: torch.as_tensor(a[rows], dtype=torch.float32, device=device)  # noqa: E731
    return as_tensor(x), as_tensor(y)


def fit_ours(X, G, args, device, epochs: int) -> tuple[float, SparseTaskVAE]:
    """Wall seconds of one whole ``SparseTaskVAE.fit`` and the fitted estimator."""
    model = SparseTaskVAE(
        args.latent_dim,
        sparsity=0,
        epochs=epochs,
        patience=epochs,
        batch_size=args.batch_size,
        device=str(device),
        random_state=args.seed,
        progress=False,
        validation_fraction=VALIDATION_FRACTION,
    )
    synchronize(device)
    started = time.perf_counter()
    model.fit(X, G)
    synchronize(device)
    seconds = time.perf_counter() - started
    if len(model.history_) != epochs:
        raise RuntimeError(f"ours ran {len(model.history_)} epochs, not {epochs}")
    return seconds, model


def plain_loss(module: SparseTaskVAEModule, x, y, beta: float) -> torch.Tensor:
    """Negative ELBO (Gaussian decoder with learned log-noise) plus half the squared error of
    every standardised target; x (batch, D), y (batch, n_tasks), no missing labels."""
    mu, logvar, _, reconstruction, outputs = module(x)
    noise = module.log_noise
    recon = 0.5 * ((x - reconstruction) ** 2).sum(1) * torch.exp(-2 * noise) + x.shape[1] * (
        noise + 0.5 * math.log(2 * math.pi)
    )
    kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(1)
    tasks = 0.5 * ((torch.cat(outputs, dim=1) - y) ** 2).mean(0).sum()
    return recon.mean() + beta * kl.mean() + tasks


def new_module(obs_dim: int, latent_dim: int, n_tasks: int, device) -> SparseTaskVAEModule:
    """The estimator's module at its default sizes, gate "l1", one output per task."""
    defaults = SparseTaskVAE().get_params()
    return SparseTaskVAEModule(
        obs_dim,
        latent_dim,
        list(defaults["hidden_sizes"]),
        list(defaults["head_sizes"]),
        [1] * n_tasks,
        gate="l1",
    ).to(device)


def fit_plain(x, y, args, device, epochs: int) -> tuple[float, SparseTaskVAEModule]:
    """Wall seconds of the plain loop (module and optimiser creation included) on the
    training tensors x (n_train, D), y (n_train, n_tasks), and the trained module."""
    defaults = SparseTaskVAE().get_params()
    synchronize(device)
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    module = new_module(x.shape[1], args.latent_dim, y.shape[1], device)
    optimizer = torch.optim.Adam(module.parameters(), lr=defaults["learning_rate"])
    n = x.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, device=device)
        for start in range(0, n, args.batch_size):
            index = order[start : start + args.batch_size]
            loss = plain_loss(module, x[index], y[index], defaults["beta"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    synchronize(device)
    return time.perf_counter() - started, module


def held_out_task_loss(module: SparseTaskVAEModule, x, y) -> list[float]:
    """Half the mean squared error of each task (n_tasks,) at the posterior means."""
    module.eval()
    with torch.no_grad():
        mu, _ = module.encode(x)
        prediction = torch.cat(module.predict_tasks(mu), dim=1)
        return (0.5 * ((prediction - y) ** 2).mean(0)).cpu().tolist()


def profile_fit(X, G, args, device) -> dict:
    """Cumulative seconds of a fit's steps (PROFILED) in one profiled fit of ours."""
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.runcall(fit_ours, X, G, args, device, args.epochs)
    out = {"fit (profiled)": time.perf_counter() - started}
    stats = pstats.Stats(profiler).stats
    for label, (suffix, name) in PROFILED.items():
        # the outermost call of a recursive function (deepcopy) holds the cumulative time
        out[label] = max(
            (row[3] for (file, _, func), row in stats.items()
             if func == name and file.endswith(suffix)),
            default=0.0,
        )
    return out


def summarise(rounds: list[dict], n_train: int, epochs: int) -> dict:
    ours = float(np.median([r["ours_s"] for r in rounds]))
    plain = float(np.median([r["plain_s"] for r in rounds]))
    samples = n_train * epochs
    return {
        "n_train": n_train,
        "epochs": epochs,
        "ours_median_s": ours,
        "plain_median_s": plain,
        "ours_s_per_epoch": ours / epochs,
        "plain_s_per_epoch": plain / epochs,
        "ours_samples_per_s": samples / ours,
        "plain_samples_per_s": samples / plain,
        "ratio_ours_over_plain": ours / plain,
        "ratio_median_of_rounds": float(np.median([r["ratio"] for r in rounds])),
    }


def print_table(summary: dict, rounds: list[dict]) -> None:
    last = rounds[-1]
    print(f"\n{'':<12}{'median s':>10}{'s/epoch':>10}{'samples/s':>12}  held-out task losses")
    for name in ("ours", "plain"):
        losses = " ".join(f"{v:.3f}" for v in last[f"{name}_valid_task_loss"])
        print(
            f"{name:<12}{summary[f'{name}_median_s']:>10.2f}"
            f"{summary[f'{name}_s_per_epoch']:>10.3f}"
            f"{summary[f'{name}_samples_per_s']:>12,.0f}  {losses}"
        )
    ratio = summary["ratio_ours_over_plain"]
    print(f"ours / plain wall time: {ratio:.3f} (overhead {100 * (ratio - 1):+.1f} %); "
          f"median of the rounds' ratios {summary['ratio_median_of_rounds']:.3f}")



def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    header = run_header(args, device=str(device), torch_threads=torch.get_num_threads())
    header["versions"]["torch"] = torch.__version__
    header["device_name"] = (
        torch.cuda.get_device_name(device) if device.type == "cuda"
        else header["machine"]["processor"]
    )
    print(f"device {device} ({header['device_name']}), torch {torch.__version__}, "
          f"{header['torch_threads']} threads, "
          f"load average {header['machine']['load_average_at_start']}")
    data = make_task_latents(n_samples=args.n, obs_dim=args.obs_dim, random_state=args.seed)
    X, G = data.obs, data.tasks
    train_rows, valid_rows = split(args.n, VALIDATION_FRACTION, args.seed)
    train_x, train_y = standardised_tensors(X, G, train_rows, device)
    valid_x, valid_y = standardised_tensors(X, G, valid_rows, device)
    fit_ours(X, G, args, device, 1)  # warm-up: thread pools, lazy imports, CUDA context
    fit_plain(train_x, train_y, args, device, 1)
    rounds = []
    for repeat in range(args.repeats):
        ours_s, model = fit_ours(X, G, args, device, args.epochs)
        plain_s, module = fit_plain(train_x, train_y, args, device, args.epochs)
        rounds.append({
            "repeat": repeat,
            "ours_s": ours_s,
            "plain_s": plain_s,
            "ratio": ours_s / plain_s,
            "ours_valid_task_loss": held_out_task_loss(model.module_, valid_x, valid_y),
            "plain_valid_task_loss": held_out_task_loss(module, valid_x, valid_y),
            "load_average": load_average(),
        })
        print(f"round {repeat}: ours {ours_s:.2f} s, plain {plain_s:.2f} s, "
              f"ratio {ours_s / plain_s:.3f}, load {rounds[-1]['load_average']}", flush=True)
    summary = summarise(rounds, len(train_rows), args.epochs)
    print_table(summary, rounds)
    record = {**header, "rounds": rounds, "summary": summary}
    if args.profile:
        record["profile_s"] = profile_fit(X, G, args, device)
        print("\nwhere one fit of ours spends its time (cumulative s, profiled):")
        for label, seconds in record["profile_s"].items():
            print(f"  {label:<40} {seconds:8.3f}")
    record["load_average_at_end"] = load_average()
    write_results(args.out, record)


if __name__ == "__main__":
    main()
