"""What training runs cost: a run's sizes from its spec, and its seconds from a linear model fitted to runs
that finished (the run cache's own, or a benchmark's).

seconds ~ fixed + a * (training image-epochs) + b * (forward images), fitted by non-negative least squares.
`lesionlib grid --dry-run` estimates a build with it; `benchmarks.gpu_grid` projects the paper grid with it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path


def features(n_train, n_valid, n_scored, epochs_run) -> tuple:
    """(training image-epochs, forward images) of a run: a validation pass before training and after each
    epoch, then `predict` on the `n_scored` lesions it is scored on."""
    return n_train * epochs_run, n_valid * (epochs_run + 1) + n_scored


def fit_run_time(rows: list) -> dict | None:
    """seconds ~ fixed + a * image-epochs + b * forward images, non-negative least squares over `rows`
    ({n_train, n_valid, n_scored, epochs_run, wall_s}); None with fewer than three runs."""
    import numpy as np
    from scipy.optimize import nnls

    if len(rows) < 3:
        return None
    X = np.array([[1.0, *features(r["n_train"], r["n_valid"], r["n_scored"], r["epochs_run"])] for r in rows])
    t = np.array([r["wall_s"] for r in rows], dtype=float)
    coef, _ = nnls(X, t)
    resid = t - X @ coef
    return {"fixed_s": float(coef[0]), "per_train_image_epoch_s": float(coef[1]),
            "per_forward_image_s": float(coef[2]), "runs": len(rows),
            "rms_residual_s": float(math.sqrt(np.mean(resid ** 2))), "mean_s": float(t.mean())}


def predicted_s(coef: dict, n_train, n_valid, n_scored, epochs_run) -> float:
    """A run's seconds by the fitted model."""
    x, y = features(n_train, n_valid, n_scored, epochs_run)
    return coef["fixed_s"] + coef["per_train_image_epoch_s"] * x + coef["per_forward_image_s"] * y


def run_size(spec: dict) -> dict:
    """{n_train, n_valid, n_scored, epochs} of one run from its spec (epochs: its cap).

    G (natural crops) holds out `valid_frac` of its crops; a lesion model holds out `valid_frac` of its
    sample, or one of `folds` folds (Fig 3); a target model is scored on its `test_size` lesions."""
    cfg = spec["train"]
    if spec["role"] == "generic":
        n, n_valid, n_test = int(spec["n"]), int(round(spec["n"] * cfg["valid_frac"])), 0
    else:
        s = spec["sample"]
        n = int(s["n"])
        n_valid = n // int(s["folds"]) if "fold" in s else int(round(n * cfg["valid_frac"]))
        n_test = int(s.get("test_size", 0))
    return {"n_train": n - n_valid, "n_valid": n_valid, "n_scored": n_test, "epochs": int(cfg["epochs"])}


def finished_rows(results) -> list:
    """Fit rows ({n_train, n_valid, n_scored, epochs_run, epoch_cap, wall_s}) of finished runs' results."""
    return [{"n_train": r["fit"]["n_train"], "n_valid": r["fit"]["n_valid"], "n_scored": len(r.get("test_ids") or []),
             "epochs_run": r["fit"]["epochs_run"], "epoch_cap": r["fit"]["epoch_cap"], "wall_s": r["fit"]["seconds"]}
            for r in results if r.get("fit", {}).get("seconds")]


def benchmark_coef(root: Path, device: str, image_size: int) -> tuple[dict, str] | None:
    """A run-time model from the committed benchmarks for `device` ('cpu' or 'cuda'), scaled to `image_size`
    by pixel count, and where it came from; None without a benchmark of that kind.

    cuda: the fit of the newest `gpu-*.json`. cpu: `latest.json`'s training throughput (a forward image costs
    a third of a training image, as backpropagation roughly doubles a forward pass), its runs' fixed seconds."""
    results = root / "benchmarks" / "results"
    if device.startswith("cuda"):
        files = sorted(results.glob("gpu-*.json"), key=lambda p: p.stat().st_mtime)
        for path in reversed(files):
            d = json.loads(path.read_text())
            fit = d.get("projection", {}).get("fit")
            if fit:
                scale = (image_size / d["settings"]["size"]) ** 2
                return ({"fixed_s": fit["fixed_s"], "per_train_image_epoch_s": fit["per_train_image_epoch_s"] * scale,
                         "per_forward_image_s": fit["per_forward_image_s"] * scale},
                        f"{path.name} ({d.get('device', 'GPU')}, {d['settings']['size']}² scaled to {image_size}²)")
        return None
    path = results / "latest.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    try:
        ips, size = d["throughput"]["lesionlib"]["images_per_s"], d["settings"]["size"]
        runs = d["run_cost"]["runs"]
    except KeyError:
        return None
    fixed = sorted(r["wall_s"] - r["phases"]["epochs"] for r in runs)[len(runs) // 2]
    per_image = (image_size / size) ** 2 / ips
    return ({"fixed_s": fixed, "per_train_image_epoch_s": per_image, "per_forward_image_s": per_image / 3},
            f"{path.name} ({d['machine']['cpu']}, {d['machine']['cores']} cores, {ips:.0f} images/s at {size}² "
            f"scaled to {image_size}²)")
