import pytest

from anyseg.config import PRESETS, ImageEncoderConfig, SamConfig, get_preset
from anyseg.errors import InvalidInputError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_validate_and_round_trip(name: str) -> None:
    cfg = PRESETS[name]
    cfg.validate()
    assert SamConfig.from_dict(cfg.to_dict()) == cfg


def test_official_hyperparameters() -> None:
    b, l, h = PRESETS["vit_b"], PRESETS["vit_l"], PRESETS["vit_h"]
    assert (b.image_encoder.embed_dim, b.image_encoder.depth, b.image_encoder.num_heads) == (
        768,
        12,
        12,
    )
    assert (l.image_encoder.embed_dim, l.image_encoder.depth, l.image_encoder.num_heads) == (
        1024,
        24,
        16,
    )
    assert (h.image_encoder.embed_dim, h.image_encoder.depth, h.image_encoder.num_heads) == (
        1280,
        32,
        16,
    )
    assert h.image_encoder.global_attn_indexes == (7, 15, 23, 31)
    assert b.image_encoder.embedding_size == 64


def test_unknown_keys_are_named() -> None:
    data = PRESETS["test"].to_dict()
    data["image_encoder"]["depht"] = 3
    with pytest.raises(InvalidInputError, match="depht"):
        SamConfig.from_dict(data)
    with pytest.raises(InvalidInputError, match="bogus"):
        SamConfig.from_dict({"bogus": 1})


def test_invalid_configs() -> None:
    with pytest.raises(InvalidInputError, match="multiple of patch_size"):
        ImageEncoderConfig(img_size=1000).validate()
    with pytest.raises(InvalidInputError, match="global_attn_indexes"):
        ImageEncoderConfig(depth=2, global_attn_indexes=(5,)).validate()
    with pytest.raises(InvalidInputError, match="widths must agree"):
        SamConfig(image_encoder=ImageEncoderConfig(out_chans=128)).validate()
    with pytest.raises(InvalidInputError, match="known presets"):
        get_preset("vit_x")
