"""BERT's tokenizer (the `tokenizers` library) and weight names, without torch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


class FastTokenizer:
    """Callable like a transformers fast tokenizer for what mmsearch uses: a list of texts
    in, padded `input_ids`, `token_type_ids`, `attention_mask` out (torch tensors with
    `return_tensors="pt"`, numpy arrays with "np")."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_padding()
        self._tok.no_truncation()

    def __call__(self, texts: Sequence[str], padding: bool = True, truncation: bool = True,
                 max_length: int = 512, return_tensors: str = "pt") -> dict[str, Any]:
        tok = self._tok
        if truncation:
            tok.enable_truncation(max_length)
        encs = tok.encode_batch(list(texts))
        width = max((len(e.ids) for e in encs), default=0)

        def pad(rows: list[list[int]]) -> Any:
            out = np.array([r + [0] * (width - len(r)) for r in rows], dtype=np.int64)
            if return_tensors == "pt":
                import torch

                return torch.from_numpy(out)
            return out

        return {"input_ids": pad([e.ids for e in encs]),
                "token_type_ids": pad([e.type_ids for e in encs]),
                "attention_mask": pad([e.attention_mask for e in encs])}


#: transformers' BertModel parameter names -> ours (per layer: "encoder.layer.N." prefix).
_NAMES = {"embeddings.word_embeddings": "word", "embeddings.position_embeddings": "position",
          "embeddings.token_type_embeddings": "token_type", "embeddings.LayerNorm": "norm"}
_LAYER_NAMES = {"attention.self.query": "query", "attention.self.key": "key",
                "attention.self.value": "value", "attention.output.dense": "attn_out",
                "attention.output.LayerNorm": "attn_norm", "intermediate.dense": "inner",
                "output.dense": "out", "output.LayerNorm": "out_norm"}


def bert_weight_name(name: str) -> str | None:
    name = name.removeprefix("bert.")
    module, _, param = name.rpartition(".")
    param = {"gamma": "weight", "beta": "bias"}.get(param, param)
    if module in _NAMES:
        return f"{_NAMES[module]}.{param}"
    if module.startswith("encoder.layer."):
        index, _, rest = module[len("encoder.layer."):].partition(".")
        if rest in _LAYER_NAMES:
            return f"layers.{index}.{_LAYER_NAMES[rest]}.{param}"
    return None  # the pooler and position ids are not used
