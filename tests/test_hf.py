"""Loading a causal language model's float weights without holding them twice."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("accelerate")


def test_a_causal_lm_takes_the_loaded_tensors_themselves_and_computes_as_a_normal_load(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from sweeper.hf import _assigned

    settings = {
        "vocab_size": 60, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True,
    }  # fmt: skip
    torch.manual_seed(0)
    reference = LlamaForCausalLM(LlamaConfig(**settings)).eval()
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "weights.pt")
    state = torch.load(tmp_path / "weights.pt", mmap=True, weights_only=True)["state_dict"]
    model = _assigned(LlamaConfig(**settings), state, "weights.pt").eval()
    shared = {k: v.data_ptr() for k, v in state.items()}
    assert all(p.data_ptr() == shared[name] for name, p in model.named_parameters())  # one copy: the file's
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    ids = torch.randint(0, 60, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits)
    with pytest.raises(ValueError, match="no weights for"):
        _assigned(LlamaConfig(**settings), {}, "empty.pt")
