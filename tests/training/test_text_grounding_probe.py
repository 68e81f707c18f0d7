"""scripts/text_grounding_probe.py: its grounding head finds a prompt's cells when the cell
features carry what the prompt describes, and not when the prompt says nothing; the script runs
end to end on scenes from `anyseg synth`."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

from anyseg.cli.main import main as anyseg

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "text_grounding_probe.py"


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("text_grounding_probe", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def colour_scenes(probe: ModuleType, images: int, seed: int, informative: bool) -> object:
    """Images of 64 cells, each of one of 4 colours (one-hot features); a prompt per colour
    present asks for that colour's cells, as a fixed random code of it (or one code for all)."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.nn.functional.normalize(
        torch.randn(4, 16, generator=torch.Generator().manual_seed(9)), dim=1
    )
    colour = torch.randint(0, 4, (images, 64), generator=g)
    rows = [(k, c) for k in range(images) for c in range(4) if (colour[k] == c).any()]
    image = torch.tensor([k for k, _ in rows])
    asked = torch.tensor([c for _, c in rows])
    prompt = codes[asked] if informative else codes[:1].expand(len(rows), -1)
    inside = colour[image] == asked[:, None]
    features = torch.nn.functional.one_hot(colour, 4).float()
    return probe.ProbeSet(
        features, features[..., :3], image, prompt, inside, torch.zeros(len(rows), dtype=torch.bool)
    )


@pytest.mark.parametrize("informative", [True, False])
def test_the_head_finds_the_described_cells_only_from_an_informative_prompt(
    probe: ModuleType, informative: bool
) -> None:
    train = colour_scenes(probe, 40, 0, informative)
    test = colour_scenes(probe, 20, 1, informative)
    head, mean, std = probe.fit(train, "embedding", "mlp", steps=300, images_per_step=8)
    hit = probe.score(head, mean, std, test, "embedding")
    if informative:
        assert hit > 0.95
    else:
        assert hit < 0.5  # one answer for every question: about 1 in 4
    assert 0.2 < probe.chance(test) < 0.3


def test_loss_and_hits_by_hand(probe: ModuleType) -> None:
    scores = torch.tensor([[0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]])
    inside = torch.tensor([[True, True, False, False], [False, True, False, False]])
    assert probe.hit_rate(scores, inside) == 0.5
    softmax1 = torch.softmax(scores[1], 0)[1]
    expected = -(torch.log(torch.tensor(0.5)) + torch.log(softmax1)) / 2
    torch.testing.assert_close(probe.grounding_loss(scores, inside), expected)
    cov = torch.tensor([[0.2, 0.4], [0.1, 0.0]]).numpy()
    assert probe.inside_cells(cov).tolist() == [False, True, False, False]  # none >= 0.5: best


def test_the_script_runs_on_synthetic_scenes(
    probe: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, seed in (("train", 1), ("test", 2)):
        assert (
            anyseg(
                [
                    "synth",
                    str(tmp_path / name),
                    "--count",
                    "2",
                    "--seed",
                    str(seed),
                    "--size",
                    "128",
                    "--workers",
                    "1",
                ]
            )
            == 0
        )
    code = probe.main(
        [
            str(tmp_path / "train"),
            str(tmp_path / "test"),
            "--steps",
            "3",
            "--min-area",
            "100",
            "--runs",
            "embedding:linear,both:mlp",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "| embedding | linear |" in out and "| both | mlp |" in out
    with pytest.raises(SystemExit):
        probe.main([str(tmp_path / "train"), str(tmp_path / "test"), "--runs", "colour:deep"])
