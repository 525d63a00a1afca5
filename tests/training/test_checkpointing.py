"""Activation (gradient) checkpointing, a knob of the Hugging Face models: layers recomputed, gradients unchanged."""

from __future__ import annotations

import pytest
import torch

from sweeper.hf import make_bert, make_causal_lm


def _backward(make, enabled: bool, ids: torch.Tensor, monkeypatch) -> tuple[int, list[torch.Tensor]]:
    """Calls of each layer's attention during one training step, and the gradients (the class's forward is
    counted: module hooks do not run in checkpointing's recomputation)."""
    torch.manual_seed(0)
    model = make(enabled)
    model.train()
    layers = model.model.model.layers if hasattr(model.model, "model") else model.model.bert.encoder.layer
    attention = type(getattr(layers[0], "self_attn", None) or layers[0].attention)
    calls = []
    forward = attention.forward

    def counted(self, *args, **kwargs):
        calls.append(1)
        return forward(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(attention, "forward", counted)
        model(ids).float().logsumexp(-1).mean().backward()
    return len(calls) // len(layers), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize(
    "make",
    [
        lambda on: make_causal_lm(input_shape=(16,), num_classes=200, gradient_checkpointing=on, attention_dropout=0.0),
        lambda on: make_bert(input_shape=(16,), num_classes=3, vocab=200, dropout=0.0, gradient_checkpointing=on),
    ],
    ids=["tiny_llama", "bert"],
)
def test_checkpointing_recomputes_each_layer_in_backward_and_keeps_the_gradients(make, monkeypatch):
    ids = torch.randint(1, 200, (4, 16), generator=torch.Generator().manual_seed(1))
    plain_calls, plain = _backward(make, False, ids, monkeypatch)
    checkpointed_calls, recomputed = _backward(make, True, ids, monkeypatch)
    assert (plain_calls, checkpointed_calls) == (1, 2)  # the second forward runs inside backward
    for a, b in zip(plain, recomputed, strict=True):
        torch.testing.assert_close(a, b)
