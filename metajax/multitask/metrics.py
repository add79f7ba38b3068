"""Metrics of multi-task models: ROC-AUC of binary tasks."""

import jax
import jax.numpy as jnp


def roc_auc(scores: jax.Array, labels: jax.Array) -> jax.Array:
    """Area under the ROC curve of ``[n]`` scores for ``[n]`` labels in {0, 1}.

    The Mann-Whitney statistic: the probability that a random positive scores
    above a random negative, ties counting one half, from the ranks of the
    scores (tied scores share their average rank). NaN when a class is absent.
    """
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"roc_auc needs scores [n] and labels [n], got shapes {scores.shape} and {labels.shape}")
    scores = scores.astype(jnp.float32)
    labels = labels.astype(jnp.float32)
    ordered = jnp.sort(scores)
    below = jnp.searchsorted(ordered, scores, side="left")
    not_above = jnp.searchsorted(ordered, scores, side="right")
    ranks = (below + not_above + 1) / 2  # 1-based, averaged over ties
    positives = jnp.sum(labels)
    negatives = labels.shape[0] - positives
    mean_positive_rank = jnp.sum(ranks * labels) / positives
    return (mean_positive_rank - (positives + 1) / 2) / negatives
