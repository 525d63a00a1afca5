"""Recommendation: MovieLens-100k as implicit feedback, leave-one-out with sampled negatives (NCF's protocol)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from sweeper.data import Task
from sweeper.tasks._files import packaged_file

__all__ = ["ITEMS", "USERS", "movielens"]

USERS, ITEMS = 943, 1682  # MovieLens-100k
SOURCE = (
    "MovieLens-100k (GroupLens; research use, not redistributed here): 100,000 ratings of 1,682 movies by "
    "943 users, shipped by recbole: recbole/dataset_example/ml-100k/ml-100k.inter"
)


def movielens(*, seed: int, negatives: int = 4, candidates: int = 100) -> Task:
    """Every rating is an interaction. Per user, the latest interaction is the test item, the one
    before it the validation item, the rest train; training pairs are (user, item) ids labelled 1,
    plus ``negatives`` sampled non-interacted items labelled 0 per positive. Validation and test
    rank the held-out item among ``candidates - 1`` sampled items the user never interacted with:
    NDCG@10 and HR@10 (He et al. 2017); the baseline ranks by popularity."""
    if not (isinstance(negatives, int) and negatives >= 1):
        raise ValueError(f"data.negatives={negatives}: must be an integer >= 1")
    if not (isinstance(candidates, int) and 11 <= candidates <= 1000):
        raise ValueError(f"data.candidates={candidates}: must be an integer in [11, 1000]")
    path = packaged_file("recbole", "dataset_example/ml-100k/ml-100k.inter", data="movielens")
    table = pd.read_csv(path, sep="\t", header=0, names=["user", "item", "rating", "time"])
    table["user"] = table["user"].astype(np.int64) - 1  # ids 1..943, 1..1682 in the file
    table["item"] = table["item"].astype(np.int64) - 1
    table = table.sort_values(["user", "time", "item"], kind="stable")
    rank_from_last = table.groupby("user").cumcount(ascending=False)
    rng = np.random.default_rng(seed)
    seen = np.zeros((USERS, ITEMS), dtype=bool)
    seen[table["user"].to_numpy(), table["item"].to_numpy()] = True

    def unseen(user: int, k: int) -> np.ndarray:
        """``k`` distinct items ``user`` never interacted with."""
        return rng.choice(np.flatnonzero(~seen[user]), size=k, replace=False)

    def one_unseen_each(users: np.ndarray) -> np.ndarray:
        """One never-interacted item per entry of ``users`` (rejection sampling, all entries at once)."""
        items = rng.integers(0, ITEMS, size=len(users))
        redraw = seen[users, items]
        while redraw.any():
            items[redraw] = rng.integers(0, ITEMS, size=int(redraw.sum()))
            redraw = seen[users, items]
        return items

    def held_out(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = table[rank_from_last == rank]
        lists, where = [], []
        for user, item in zip(rows["user"], rows["item"], strict=True):
            pool = np.concatenate([[item], unseen(user, candidates - 1)])
            order = rng.permutation(candidates)
            lists.append(np.stack([np.full(candidates, user), pool[order]], axis=1))
            where.append(int(np.flatnonzero(order == 0)[0]))
        return torch.from_numpy(np.stack(lists)), torch.tensor(where)

    train = table[rank_from_last >= 2]
    users = np.repeat(train["user"].to_numpy(), negatives)
    negative_items = one_unseen_each(users)
    pairs = np.concatenate([train[["user", "item"]].to_numpy(), np.stack([users, negative_items], axis=1)])
    labels = np.concatenate([np.ones(len(train), np.int64), np.zeros(len(users), np.int64)])
    x_val, y_val = held_out(1)
    x_test, y_test = held_out(0)
    return Task(
        "movielens", torch.from_numpy(pairs), torch.from_numpy(labels), x_val, y_val, x_test, y_test,
        num_classes=2, metrics=("ndcg_at_10", "hr_at_10"), baseline="popularity", source=SOURCE,
    )  # fmt: skip
