"""Choosing the teaching photos with a model of the learner: random, STRICT and EXPLAIN, in NumPy.

The learner model of STRICT (Singla et al., "Near-Optimally Teaching the Crowd to Classify", ICML 2014) as
implemented in macaodha/explain_teach (Mac Aodha et al., CVPR 2018, ``code/explain/offline_teachers.py``):
- the learner holds a distribution over hypotheses: linear classifiers W (C x D) in the model's feature space
  (the pooled features before the classifier, reduced by PCA), sampled around the best one fitted to the pool;
- shown a labelled photo (x, y), a hypothesis that predicts y keeps its weight, one that predicts another class is
  multiplied by the probability it gives to that wrong answer's complement (``likelihood``, alpha the sharpness);
- the teacher greedily picks the photo that most lowers the learner's expected error on the pool,
  E[err] = sum_h P(h | A + x) err(h).
EXPLAIN's teacher is STRICT's with each photo's score multiplied by how representative the photo is (density) and
by how hard its explanation is to read (the entropy of its CAM squashed to [0.5, 0.73]); since the score is
negative, a photo with an easy explanation (low entropy) is favoured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STRATEGIES = ("random", "strict", "explain")
ALPHA = 5.0  # the learner's sharpness (explain_teach: 0.5 on SVM weights; our ridge weights are ~10x smaller)
N_HYPS = 200
PCA_DIMS = 3  # the held-out accuracy of the best hypothesis peaks at 3 on elephants and sharks (docs/TEACHING.md)


@dataclass(frozen=True)
class LearnerModel:
    """Hypotheses, their error on the pool and the likelihood of each labelled photo under each of them."""

    X: np.ndarray  # (N, D) reduced features (with a bias column)
    y: np.ndarray  # (N,) class positions 0..C-1
    hyps: np.ndarray  # (H, C, D)
    err: np.ndarray  # (H,) error of each hypothesis on the pool
    likelihood: np.ndarray  # (H, N) P(the learner agrees with label y_n | h)


def reduce(features: np.ndarray, dims: int = PCA_DIMS) -> np.ndarray:
    """Centre, project on the first principal directions (at most N-1), scale to unit variance, add a bias."""
    X = np.asarray(features, dtype=np.float64)
    X = X - X.mean(0)
    k = max(1, min(dims, X.shape[0] - 1, X.shape[1]))
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    Z = X @ vt[:k].T
    Z /= Z.std(0) + 1e-9
    return np.hstack([Z, np.ones((Z.shape[0], 1))])


def fit_linear(X: np.ndarray, y: np.ndarray, n_classes: int, ridge: float = 1.0) -> np.ndarray:
    """The teacher's hypothesis: ridge regression on one-hot labels (C x D)."""
    T = np.eye(n_classes)[y] * 2 - 1
    A = X.T @ X + ridge * np.eye(X.shape[1])
    return np.linalg.solve(A, X.T @ T).T


def user_model(hyps: np.ndarray, X: np.ndarray, y: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """explain_teach's multi-class user model: (P(agree with y | h, x) as (H, N), the predicted classes (H, N))."""
    z = alpha * np.einsum("hcd,nd->hnc", hyps, X)
    pred = z.argmax(-1)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p_pred = np.take_along_axis(p, pred[..., None], -1)[..., 0]
    agree = np.where(pred == y[None, :], p_pred, 1.0 - p_pred)
    return agree, pred


def learner_model(
    features: np.ndarray,
    y: Sequence[int],
    n_classes: int,
    rng: np.random.Generator,
    n_hyps: int = N_HYPS,
    alpha: float = ALPHA,
    dims: int = PCA_DIMS,
) -> LearnerModel:
    """The learner model over a pool of photos: their features reduced (`reduce`), then `model_of`."""
    return model_of(reduce(features, dims), y, n_classes, rng, n_hyps, alpha)


def model_of(
    X: np.ndarray,
    y: Sequence[int],
    n_classes: int,
    rng: np.random.Generator,
    n_hyps: int = N_HYPS,
    alpha: float = ALPHA,
) -> LearnerModel:
    """Sample hypotheses around the best linear classifier (from close copies to random ones), with the best kept."""
    labels = np.asarray(y, dtype=np.int64)
    best = fit_linear(X, labels, n_classes)
    scale = np.linalg.norm(best) / np.sqrt(best.size)
    noise = rng.normal(size=(n_hyps - 1, *best.shape)) * scale
    mix = rng.uniform(0.2, 3.0, size=(n_hyps - 1, 1, 1))  # how far each hypothesis strays from the best
    return with_hypotheses(X, labels, np.concatenate([best[None], best[None] + mix * noise]), alpha)


def with_hypotheses(X: np.ndarray, y: np.ndarray, hyps: np.ndarray, alpha: float = ALPHA) -> LearnerModel:
    """The learner model of given hypotheses over the photos X with labels y."""
    agree, pred = user_model(hyps, X, y, alpha)
    err = (pred != y[None, :]).mean(1)
    likelihood = np.where(pred == y[None, :], 1.0, agree)
    return LearnerModel(X, y, hyps, err, likelihood)


def density(X: np.ndarray, y: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """explain_teach's representativeness: sigmoid of the mean squared distance to the photos of the same class
    (larger for outliers, which then discount the photo's score more)."""
    d = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    dens = np.zeros(len(y))
    for c in np.unique(y):
        idx = np.where(y == c)[0]
        dens[idx] = d[np.ix_(idx, idx)].mean(1)
    dens /= dens.max() + 1e-12  # reduced features of different sizes land on one scale
    return 1.0 / (1.0 + np.exp(-sigma * dens))


def interpretability(entropy: np.ndarray, y: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """explain_teach's explanation difficulty: entropy minus its class mean, scaled to [0, 1], then a sigmoid
    (0.5 for the easiest explanation, 0.73 for the hardest)."""
    e = np.asarray(entropy, dtype=np.float64).copy()
    for c in np.unique(y):
        e[y == c] -= e[y == c].mean()
    e -= e.min()
    e /= e.max() if e.max() > 0 else 1.0
    return 1.0 / (1.0 + np.exp(-sigma * (e + 1e-7)))


def select(
    model: LearnerModel,
    k: int,
    strategy: str,
    rng: np.random.Generator,
    candidates: Sequence[int] | None = None,
    entropy: np.ndarray | None = None,
) -> list[int]:
    """The ordered teaching set: k indices into the pool, from `candidates` (default: all)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    pool = list(range(len(model.y))) if candidates is None else list(candidates)
    k = min(k, len(pool))
    if strategy == "random":
        return [int(i) for i in rng.permutation(pool)[:k]]
    weight = np.ones(len(model.y))
    if strategy == "explain":
        ent = np.zeros(len(model.y)) if entropy is None else np.asarray(entropy)
        weight = density(model.X, model.y) * interpretability(ent, model.y)
    post = np.full(len(model.err), 1.0 / len(model.err))
    chosen: list[int] = []
    for _ in range(k):
        score = -(post * model.err) @ model.likelihood * weight  # higher is better (less expected error)
        unseen = [i for i in pool if i not in chosen]
        best = max(unseen, key=lambda i: (score[i], -i))
        chosen.append(best)
        post = post * model.likelihood[:, best]
        post /= post.sum()
    return chosen


def posterior(model: LearnerModel, shown: Sequence[int], prior: np.ndarray | None = None) -> np.ndarray:
    """The learner's distribution over hypotheses after seeing the photos `shown` with their labels."""
    post = np.full(len(model.err), 1.0 / len(model.err)) if prior is None else prior.copy()
    for i in shown:
        post = post * model.likelihood[:, i]
    return post / post.sum()
