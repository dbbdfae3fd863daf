"""Deterministic stratified splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ..errors import InputError


def stratified_split(labels: ArrayLike, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Split sample indices into parts with the given fractions, class by class.

    The split depends only on ``labels`` (in their given order), ``fractions`` and ``seed``: the same dataset listing
    gives the same split in every run and process. Each class is shuffled with its own generator, so adding images
    to one class does not reshuffle the others. Every class with at least as many samples as there are non-zero
    fractions gets at least one sample in each part with a non-zero fraction.

    Returns:
        one sorted index array per fraction.
    """
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise InputError(f"split fractions must be non-negative and sum to 1, got {list(fractions)}")
    label_array = np.asarray(labels)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for label in np.unique(label_array):
        members = np.flatnonzero(label_array == label)
        members = members[np.random.default_rng([seed, int(label)]).permutation(len(members))]
        # the smaller parts (val/test) get their rounded share first; the first part takes the rest
        counts = [0] + [int(round(f * len(members))) for f in fractions[1:]]
        for i, f in enumerate(fractions[1:], start=1):
            if f > 0 and counts[i] == 0 and len(members) >= sum(share > 0 for share in fractions):
                counts[i] = 1
        counts[0] = len(members) - sum(counts[1:])
        bounds = np.cumsum([0] + counts)
        for i in range(len(fractions)):
            parts[i].append(members[bounds[i]:bounds[i + 1]])
    return [np.sort(np.concatenate(p)) if p else np.array([], int) for p in parts]


def kfold_split(
    labels: ArrayLike, num_folds: int, fold: int, val_fraction: float, seed: int
) -> list[np.ndarray]:
    """Train/val/test indices for fold ``fold`` of a stratified ``num_folds``-fold split.

    The test parts of the folds are disjoint and together cover every sample; the validation part is
    ``val_fraction`` of each class of the rest (stratified, from ``seed``), the training part what remains.
    """
    if not 0 <= fold < num_folds or num_folds < 2:
        raise InputError(f"fold must be in 0..{num_folds - 1} and num_folds at least 2, got fold={fold}, "
                         f"num_folds={num_folds}")
    label_array = np.asarray(labels)
    counts = np.bincount(label_array) if len(label_array) else np.zeros(0, int)
    smallest = int(counts[counts > 0].min()) if (counts > 0).any() else 0
    if smallest < num_folds:  # a fold would test none of that class
        raise InputError(f"num_folds={num_folds} is more than the {smallest} samples of the smallest class (class "
                         f"{int(np.flatnonzero(counts == smallest)[0])}): every fold must test each class")
    test = stratified_split(label_array, [1 / num_folds] * num_folds, seed)[fold]
    rest = np.setdiff1d(np.arange(len(label_array)), test)
    train, val = stratified_split(label_array[rest], (1 - val_fraction, val_fraction), seed + 1)
    return [rest[train], rest[val], test]


def limit_per_class(indices: np.ndarray, labels: ArrayLike, per_class: int | Sequence[int], seed: int) -> np.ndarray:
    """At most ``per_class`` of ``indices`` from each class (one number, or one per class: e.g. a long tail), drawn
    from ``seed`` (to simulate a smaller or imbalanced dataset)."""
    label_array = np.asarray(labels)
    kept = []
    for label in np.unique(label_array[indices]):
        limit = per_class if isinstance(per_class, int) else per_class[int(label)]
        members = indices[label_array[indices] == label]
        kept.append(np.random.default_rng([seed, int(label)]).permutation(members)[:limit])
    return np.sort(np.concatenate(kept)) if kept else indices[:0]


def oversample(indices: np.ndarray, labels: ArrayLike, target: int, seed: int) -> np.ndarray:
    """Repeat the samples of every class with fewer than ``target`` in ``indices`` until it has ``target``: whole
    copies, then a random part without repeats (drawn from ``seed``). Classes with more are kept as they are. The
    training augmentation makes each copy a different image every epoch."""
    label_array = np.asarray(labels)
    grown = [indices]
    for label in np.unique(label_array[indices]):
        members = indices[label_array[indices] == label]
        missing = target - len(members)
        if missing > 0:
            rng = np.random.default_rng([seed, int(label), 1])
            copies, rest = divmod(missing, len(members))
            grown += [np.tile(members, copies), rng.choice(members, rest, replace=False)]
    return np.sort(np.concatenate(grown))


def balanced_class_weights(labels: ArrayLike, num_classes: int) -> np.ndarray:
    """``n_samples / (n_classes * count_c)`` (scikit-learn's "balanced"); a class with no samples gets weight 0."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
    weights = np.zeros(num_classes)
    nonzero = counts > 0
    weights[nonzero] = counts.sum() / (nonzero.sum() * counts[nonzero])
    return weights.astype(np.float32)


def group_kfold_split(labels: ArrayLike, groups: Sequence[str], num_folds: int | None, fold: int,
                      val_fraction: float, test_fraction: float, seed: int) -> list[np.ndarray]:
    """Train/val/test indices that keep each group (a signer) in one split.

    With ``num_folds``, the groups are dealt into ``num_folds`` folds after a seeded shuffle and fold ``fold`` is the
    test split; without, ``test_fraction`` of the groups (at least one, when the fraction is not 0) are. Validation
    is ``val_fraction`` of the other groups (at least one) when there are at least three groups, else a stratified
    ``val_fraction`` of the remaining samples (then validation shares signers with training: the message says so).
    """
    label_array = np.asarray(labels)
    names = sorted(set(groups))
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    if num_folds:
        if not 0 <= fold < num_folds or num_folds < 2:
            raise InputError(f"fold must be in 0..{num_folds - 1} and num_folds at least 2, got fold={fold}, "
                             f"num_folds={num_folds}")
        if num_folds > len(names):
            raise InputError(f"num_folds={num_folds} but the data has {len(names)} signers: at most one fold per "
                             "signer")
        test_groups = set(order[fold::num_folds])
    else:
        count = max(1, round(test_fraction * len(names))) if test_fraction > 0 else 0
        test_groups = set(order[:count])
    rest_groups = [name for name in order if name not in test_groups]
    group_array = np.asarray(groups)
    test = np.flatnonzero(np.isin(group_array, list(test_groups)))
    if len(rest_groups) >= 2 and len(names) >= 3:
        val_groups = set(rest_groups[:max(1, round(val_fraction * len(rest_groups)))])
        val = np.flatnonzero(np.isin(group_array, list(val_groups)))
        train = np.setdiff1d(np.arange(len(label_array)), np.concatenate([test, val]))
        return [train, val, test]
    import logging

    logging.getLogger(__name__).warning(
        "only %d signers: validation is a share of the training signers' sequences, test keeps its own signers",
        len(names))
    rest = np.setdiff1d(np.arange(len(label_array)), test)
    train, val = stratified_split(label_array[rest], (1 - val_fraction, val_fraction), seed + 1)
    return [rest[train], rest[val], test]


def held_out_classes(classes: Sequence[str], unseen: int | Sequence[str], seed: int) -> list[str]:
    """The classes held out of training for a zero-shot test: ``unseen`` of them drawn with ``seed`` (the same
    draw for the same class list and seed), or the named ones (checked against ``classes``), in class order."""
    if isinstance(unseen, int):
        if not 0 < unseen < len(classes) - 1:
            raise InputError(f"unseen_classes={unseen}: hold out at least 1 class and keep at least 2 of the "
                             f"{len(classes)} for training")
        chosen = np.random.default_rng([seed, len(classes)]).permutation(len(classes))[:unseen]
        return [classes[i] for i in sorted(chosen)]
    unknown = [name for name in unseen if name not in classes]
    if unknown:
        raise InputError(f"unseen_classes names {', '.join(unknown)}, which the data does not have")
    if len(set(unseen)) > len(classes) - 2:
        raise InputError(f"unseen_classes holds out {len(set(unseen))} of {len(classes)} classes: keep at least 2 "
                         "for training")
    return [name for name in classes if name in set(unseen)]
