"""A tiny randomly initialised BLIP ITM model + processor, built in code (no download)."""

from __future__ import annotations

from pathlib import Path

WORDS = ["a", "photo", "of", "dog", "cat", "red", "blue", "shoe", "man", "the", "on", "in"]


def make_processor(folder: Path, image_size: int = 32):
    """A BlipProcessor with a small word-piece vocabulary (written into `folder`)."""
    from transformers import BertTokenizerFast, BlipImageProcessor, BlipProcessor

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    return BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)


def make_tiny_blip(folder: Path, seed: int = 0) -> Path:
    """Save a tiny BLIP ITM model and its processor into `folder`; returns the folder."""
    import torch
    from transformers import BlipConfig, BlipForImageTextRetrieval

    processor = make_processor(folder)
    tokenizer = processor.tokenizer
    config = BlipConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "intermediate_size": 37,
                     "max_position_embeddings": 64, "pad_token_id": 0, "bos_token_id": 2,
                     "sep_token_id": 3, "initializer_range": 0.5},
        vision_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "intermediate_size": 37, "image_size": 32, "patch_size": 8,
                       "initializer_range": 0.5},
        projection_dim=16, image_text_hidden_size=16, initializer_range=0.5)
    torch.manual_seed(seed)
    BlipForImageTextRetrieval(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
