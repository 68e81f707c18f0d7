"""Every CLIP loader on random weights written in each layout, TorchScript refusal, and
numerical parity with transformers' CLIPModel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anyseg.clip import ClipModel, WordTokenizer, load_clip, save_clip
from anyseg.errors import CheckpointError

from .conftest import random_clip, tiny_config

TEXTS = ["red striped star", "a photo of a cat", "x"]


def _outputs(model: ClipModel, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        return model.encode_image(pixels), model.encode_text(tokens)


def _same_model(loaded, reference: ClipModel) -> None:
    tokens = loaded.tokenize(TEXTS)
    for a, b in zip(_outputs(loaded.model, tokens), _outputs(reference, tokens), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_openai_state_dict(tmp_path: Path) -> None:
    ref = random_clip()
    sd = ref.state_dict()
    # OpenAI's files also carry these non-weights (their loader drops them).
    sd |= {
        "input_resolution": torch.tensor(32),
        "context_length": torch.tensor(12),
        "vocab_size": torch.tensor(49408),
    }
    torch.save(sd, tmp_path / "ViT-tiny.pt")
    loaded = load_clip(tmp_path / "ViT-tiny.pt")
    assert loaded.layout == "openai" and loaded.config == ref.config
    assert loaded.config.activation == "quick_gelu" and loaded.embed_dim == 40
    assert len(loaded.sha256) == 64 and loaded.image_size == 32
    _same_model(loaded, ref)


@pytest.mark.parametrize("wrap", ["state_dict", "module", "both"])
def test_open_clip_checkpoints(tmp_path: Path, wrap: str) -> None:
    ref = random_clip(activation="gelu")
    sd = ref.state_dict()
    if wrap in ("module", "both"):
        sd = {f"module.{k}": v for k, v in sd.items()}
    obj = {"epoch": 3, "name": "ViT-tiny", "state_dict": sd} if wrap != "module" else sd
    torch.save(obj, tmp_path / "epoch_3.pt")
    loaded = load_clip(tmp_path / "epoch_3.pt")
    assert loaded.layout == "open_clip" and loaded.config.activation == "gelu"
    _same_model(loaded, ref)
    # A quickgelu model of open_clip says so by name only: the caller passes the activation.
    forced = load_clip(tmp_path / "epoch_3.pt", activation="quick_gelu")
    assert forced.config.activation == "quick_gelu"


def test_open_clip_head_width(tmp_path: Path) -> None:
    ref = random_clip(heads=4)  # 16-wide heads
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "w.pt")
    assert load_clip(tmp_path / "w.pt").config.vision.heads == 1  # 64-wide by default
    loaded = load_clip(tmp_path / "w.pt", head_width=16, activation="quick_gelu")
    assert loaded.config.vision.heads == 4
    _same_model(loaded, ref)


def _hf_model(seed: int = 0):
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        text_config={
            "vocab_size": 49408,
            "hidden_size": 64,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 12,
            "eos_token_id": 49407,
            "bos_token_id": 49406,
            "pad_token_id": 0,
        },
        vision_config={
            "hidden_size": 48,
            "intermediate_size": 80,
            "num_hidden_layers": 2,
            "num_attention_heads": 3,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=40,
    )
    torch.manual_seed(seed)
    model = CLIPModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _features(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def test_hugging_face_folder_and_parity(tmp_path: Path) -> None:
    """Random CLIPModel weights saved by transformers load with the right heads, and give the
    same embeddings as transformers within 1e-5."""
    hf = _hf_model()
    hf.save_pretrained(tmp_path / "hf")
    loaded = load_clip(tmp_path / "hf")
    assert loaded.layout == "hf"
    assert (loaded.config.vision.heads, loaded.config.text.heads) == (3, 4)  # from config.json
    torch.manual_seed(2)
    pixels = torch.randn(3, 3, 32, 32)
    tokens = loaded.tokenize(TEXTS)
    with torch.no_grad():
        ours_img, ours_txt = loaded.model.encode_image(pixels), loaded.model.encode_text(tokens)
        ref_img = _features(hf.get_image_features(pixel_values=pixels))
        ref_txt = _features(hf.get_text_features(input_ids=tokens))
    torch.testing.assert_close(ours_img, ref_img, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours_txt, ref_txt, rtol=0, atol=1e-5)
    assert float(ref_img.abs().max()) > 0.1  # not trivially zero


def test_hugging_face_weights_file_without_config(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    hf = _hf_model()
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, tmp_path / "m.safetensors")
    # Without config.json the heads are unknown: give the head width (48 / 3 = 16 = 64 / 4).
    loaded = load_clip(tmp_path / "m.safetensors", head_width=16)
    assert (loaded.config.vision.heads, loaded.config.text.heads) == (3, 4)
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.model.encode_image(pixels),
            _features(hf.get_image_features(pixel_values=pixels)),
            rtol=0,
            atol=1e-5,
        )


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_torchscript_is_refused_unless_allowed(tmp_path: Path) -> None:
    ref = random_clip()
    tokens = torch.tensor([[49406, 736, 49407]])
    scripted = torch.jit.trace_module(ref, {"encode_text": (tokens,)})
    scripted.save(str(tmp_path / "ViT-B-32.pt"))
    with pytest.raises(CheckpointError, match=r"TorchScript.*runs code.*allow_torchscript"):
        load_clip(tmp_path / "ViT-B-32.pt")
    loaded = load_clip(tmp_path / "ViT-B-32.pt", allow_torchscript=True)
    _same_model(loaded, ref)


def test_anyseg_format_round_trip(tmp_path: Path) -> None:
    words = ["a", "red", "star", "the"]
    ref = random_clip(vocab_size=len(words) + 3)
    tok = WordTokenizer(words, context_length=12)
    save_clip(ref, tok, tmp_path / "mine.safetensors")
    loaded = load_clip(tmp_path / "mine.safetensors")
    assert loaded.layout == "anyseg" and isinstance(loaded.tokenizer, WordTokenizer)
    assert loaded.tokenizer.words == tuple(words) and loaded.config == ref.config
    tokens = loaded.tokenize(["a red star", "the star"])
    for a, b in zip(_outputs(loaded.model, tokens), _outputs(ref, tokens), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    half = save_clip(ref, tok, tmp_path / "half.safetensors", half=True)
    assert half.stat().st_size < (tmp_path / "mine.safetensors").stat().st_size * 0.6
    crops = np.zeros((2, 32, 32, 3), np.uint8)
    emb = load_clip(half).encode_image(crops, normalize=True)
    assert emb.shape == (2, 40) and torch.allclose(emb.norm(dim=1), torch.ones(2))


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_clip(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_clip(tmp_path / "junk.pt")
    sd = random_clip().state_dict()
    del sd["visual.proj"]
    sd["visual.extra"] = torch.zeros(1)
    torch.save(sd, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \['visual.proj'\].*unexpected"):
        load_clip(tmp_path / "broken.pt")
    small = ClipModel(tiny_config(vocab_size=100)).state_dict()
    torch.save(small, tmp_path / "small.pt")
    with pytest.raises(CheckpointError, match="only CLIP's BPE vocabulary"):
        load_clip(tmp_path / "small.pt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(CheckpointError, match=r"model\.safetensors or pytorch_model\.bin"):
        load_clip(tmp_path / "folder")
