"""The metrics continual-learning papers report, from an accuracy matrix.

``R[i, j]`` is the accuracy on experience j's test set after training on
experiences 0..i. Definitions: Lopez-Paz & Ranzato 2017 (GEM,
arXiv 1706.08840) for average accuracy, backward and forward transfer;
Chaudhry, Dokania, Ajanthan & Torr 2018 (arXiv 1801.10112) for forgetting.
"""

from __future__ import annotations

import numpy as np


def _check(accuracy_matrix) -> np.ndarray:
    matrix = np.asarray(accuracy_matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"accuracy_matrix must have shape [experiences, experiences], got shape {matrix.shape}")
    return matrix


def average_accuracy(accuracy_matrix) -> float:
    """Mean accuracy over all experiences after the last one: mean_j R[T-1, j]."""
    return float(_check(accuracy_matrix)[-1].mean())


def backward_transfer(accuracy_matrix) -> float:
    """BWT = mean over j < T-1 of R[T-1, j] - R[j, j]; negative means forgetting. NaN for one experience."""
    matrix = _check(accuracy_matrix)
    t = matrix.shape[0]
    if t < 2:
        return float("nan")
    return float(np.mean([matrix[-1, j] - matrix[j, j] for j in range(t - 1)]))


def forward_transfer(accuracy_matrix, random_init_accuracy) -> float:
    """FWT = mean over j >= 1 of R[j-1, j] - b_j, with b_j the accuracy of the initial (untrained) model."""
    matrix = _check(accuracy_matrix)
    baseline = np.asarray(random_init_accuracy, dtype=np.float64)
    t = matrix.shape[0]
    if baseline.shape != (t,):
        raise ValueError(f"random_init_accuracy must have shape [{t}], got shape {baseline.shape}")
    if t < 2:
        return float("nan")
    return float(np.mean([matrix[j - 1, j] - baseline[j] for j in range(1, t)]))


def forgetting(accuracy_matrix) -> float:
    """Average forgetting: mean over j < T-1 of max_{l < T-1} R[l, j] - R[T-1, j]. NaN for one experience."""
    matrix = _check(accuracy_matrix)
    t = matrix.shape[0]
    if t < 2:
        return float("nan")
    return float(np.mean([matrix[: t - 1, j].max() - matrix[-1, j] for j in range(t - 1)]))
