"""PNG plots of verification results: ROC curves (log FAR axis) and score histograms.

Figures are drawn with matplotlib's Agg canvas directly (no pyplot, no global backend switch), so this
works headless and does not disturb a caller's matplotlib state. Files are written atomically.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from training.eval.metrics import check_scores_labels, roc_auc

log = logging.getLogger(__name__)


def _save_atomic(fig: Figure, path: str | Path, dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.debug("wrote %s", path)
    return path


def save_roc_png(
    path: str | Path,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str = "ROC",
    dpi: int = 120,
) -> Path:
    """ROC curves (TAR against FAR, FAR on a log axis), one per ``label -> (scores, labels)``."""
    if not curves:
        raise ValueError("save_roc_png needs at least one curve")
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    far_min = 1.0
    for name, (scores, labels) in curves.items():
        s, lab = check_scores_labels(scores, labels)
        fpr, tpr, _ = roc_curve(lab, s)
        n_diff = int((~lab).sum())
        far_min = min(far_min, 1.0 / max(n_diff, 1))
        keep = fpr > 0  # log axis: FAR = 0 cannot be drawn
        ax.plot(fpr[keep], tpr[keep], label=f"{name} (AUC {roc_auc(s, lab):.4f})", linewidth=1.4)
    ax.set_xscale("log")
    ax.set_xlim(max(far_min, 1e-6) / 2, 1.0)
    ax.set_ylim(0.0, 1.005)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return _save_atomic(fig, path, dpi)


def save_score_histogram_png(
    path: str | Path,
    scores: np.ndarray,
    labels: np.ndarray,
    threshold: float | None = None,
    bins: int = 60,
    title: str = "pair scores",
    dpi: int = 120,
) -> Path:
    """Overlaid histograms of same-identity and different-identity scores, with an optional threshold."""
    s, lab = check_scores_labels(scores, labels)
    edges = np.linspace(s.min(), s.max() if s.max() > s.min() else s.min() + 1.0, bins + 1)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.hist(s[lab], bins=edges, alpha=0.6, label=f"same ({int(lab.sum())})", color="tab:green")
    ax.hist(s[~lab], bins=edges, alpha=0.6, label=f"different ({int((~lab).sum())})", color="tab:red")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2,
                   label=f"threshold {threshold:.4f}")
    ax.set_xlabel("score (higher = same)")
    ax.set_ylabel("pairs")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _save_atomic(fig, path, dpi)
