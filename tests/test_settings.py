"""The binder: dataclasses <-> config files <-> flags, the same way for every command."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from anyseg import settings
from anyseg.errors import InvalidInputError
from anyseg.settings import opt


@dataclass(frozen=True)
class Inner:
    size: int = field(default=4, metadata=opt("grid size"))
    ratio: float = field(default=0.5, metadata=opt("a ratio"))

    def __post_init__(self) -> None:
        if not 0 <= self.ratio <= 1:
            raise InvalidInputError(f"ratio must be in [0, 1], got {self.ratio}")


@dataclass(frozen=True)
class Outer:
    name: str = field(default="x", metadata=opt("a name"))
    steps: int = field(default=10, metadata=opt("how many", flag="--steps"))
    kind: Literal["a", "b"] = field(default="a", metadata=opt("which kind"))
    tags: tuple[str, ...] = field(default=("p",), metadata=opt("tags"))
    limit: int | None = field(default=None, metadata=opt("optional limit"))
    verbose: bool = field(default=False, metadata=opt("say more"))
    feedback: bool = field(
        default=True, metadata=opt("no feedback", flag="--no-feedback", const=False)
    )
    out: Path = field(default=Path("o"), metadata=opt("folder"))
    hidden: int = field(default=3, metadata={"cli": False})
    inner: Inner = field(default_factory=Inner, metadata={"prefix": "in-"})


def parse(argv: list[str], **kwargs: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, Outer, nested=True, **kwargs)  # type: ignore[arg-type]
    return parser.parse_args(argv)


def test_from_mapping_checks_names_and_types() -> None:
    cfg = settings.from_mapping(
        Outer, {"steps": 3, "tags": ["a", "b"], "inner": {"ratio": 1}, "out": "p/q"}
    )
    assert cfg.steps == 3 and cfg.tags == ("a", "b") and cfg.out == Path("p/q")
    assert cfg.inner == Inner(ratio=1.0) and isinstance(cfg.inner.ratio, float)
    with pytest.raises(InvalidInputError, match=r"stepz \(did you mean steps\?\)"):
        settings.from_mapping(Outer, {"stepz": 3})
    with pytest.raises(InvalidInputError, match=r"inner\.sise \(did you mean size\?\)"):
        settings.from_mapping(Outer, {"inner": {"sise": 3}})
    with pytest.raises(InvalidInputError, match="steps: expected an integer, got 'many'"):
        settings.from_mapping(Outer, {"steps": "many"})
    with pytest.raises(InvalidInputError, match="steps: expected an integer, got True"):
        settings.from_mapping(Outer, {"steps": True})
    with pytest.raises(InvalidInputError, match=r"kind: expected one of \['a', 'b'\]"):
        settings.from_mapping(Outer, {"kind": "c"})
    with pytest.raises(InvalidInputError, match="verbose: expected true or false"):
        settings.from_mapping(Outer, {"verbose": "yes"})
    with pytest.raises(InvalidInputError, match="inner must be a table"):
        settings.from_mapping(Outer, {"inner": 3})
    with pytest.raises(InvalidInputError, match=r"my.toml: ratio must be in \[0, 1\]"):
        settings.from_mapping(Outer, {"inner": {"ratio": 2}}, source="my.toml")


def test_base_keeps_what_the_mapping_does_not_name() -> None:
    base = Outer(name="keep", inner=Inner(size=9))
    cfg = settings.from_mapping(Outer, {"steps": 5, "inner": {"ratio": 0.25}}, base=base)
    assert cfg == Outer(name="keep", steps=5, inner=Inner(size=9, ratio=0.25))


def test_round_trip_through_mapping_and_toml(tmp_path: Path) -> None:
    cfg = Outer(name='q"uote', tags=("a", "b"), limit=7, verbose=True, inner=Inner(size=2))
    assert settings.from_mapping(Outer, settings.to_mapping(cfg)) == cfg
    path = tmp_path / "c.toml"
    path.write_text(settings.dump_toml(cfg))
    assert settings.load_file(Outer, path) == cfg
    assert "limit" not in settings.dump_toml(Outer())  # None is left out (TOML has no null)


def test_files_in_every_format_and_extends(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text(
        'name = "base"\nsteps = 2\n[inner]\nsize = 8\nratio = 0.1\n'
    )
    (tmp_path / "child.yaml").write_text("extends: base.toml\nsteps: 3\ninner:\n  ratio: 0.9\n")
    (tmp_path / "grandchild.json").write_text('{"extends": "child.yaml", "tags": ["z"]}')
    cfg = settings.load_file(Outer, tmp_path / "grandchild.json")
    # Tables merge key by key: size comes from base.toml, ratio from child.yaml.
    assert cfg == Outer(name="base", steps=3, tags=("z",), inner=Inner(size=8, ratio=0.9))
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(InvalidInputError, match="cycle"):
        settings.read_file(tmp_path / "a.toml")
    (tmp_path / "bad.toml").write_text("steps = \n")
    with pytest.raises(InvalidInputError, match=r"bad\.toml' is not valid"):
        settings.read_file(tmp_path / "bad.toml")
    with pytest.raises(InvalidInputError, match="does not exist"):
        settings.read_file(tmp_path / "missing.toml")
    (tmp_path / "c.toml").write_text('extends = "missing.toml"\n')
    with pytest.raises(InvalidInputError, match=r"missing\.toml' does not exist"):
        settings.read_file(tmp_path / "c.toml")


def test_flags_come_from_the_fields() -> None:
    assert settings.from_arguments(Outer, parse([])) == Outer()
    args = parse(
        [
            "--name",
            "n",
            "--steps",
            "4",
            "--kind",
            "b",
            "--tags",
            "x,y",
            "--limit",
            "2",
            "--verbose",
            "--no-feedback",
            "--out",
            "d",
            "--in-size",
            "6",
            "--in-ratio",
            "0.75",
        ]
    )
    assert settings.from_arguments(Outer, args) == Outer(
        name="n",
        steps=4,
        kind="b",
        tags=("x", "y"),
        limit=2,
        verbose=True,
        feedback=False,
        out=Path("d"),
        inner=Inner(size=6, ratio=0.75),
    )
    with pytest.raises(SystemExit):
        parse(["--kind", "c"])
    with pytest.raises(SystemExit):
        parse(["--hidden", "1"])  # cli=False


def test_absent_flags_leave_the_base_alone() -> None:
    base = Outer(name="from-file", inner=Inner(size=1))
    cfg = settings.from_arguments(Outer, parse(["--steps", "8"]), base=base)
    assert cfg == dataclasses.replace(base, steps=8)


def test_marked_only_and_exclude() -> None:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, Outer, nested=True, marked_only=True)
    flags = {o for a in parser._actions for o in a.option_strings} - {"-h", "--help"}
    assert flags == {"--steps", "--no-feedback"}
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, Outer, exclude=("name", "out"))
    flags = {o for a in parser._actions for o in a.option_strings}
    assert "--name" not in flags and "--out" not in flags and "--in-size" not in flags


def test_errors_name_the_flag_as_typed() -> None:
    with pytest.raises(InvalidInputError, match=r"ratio must be in \[0, 1\].*\(--in-ratio 3\)"):
        settings.from_arguments(Outer, parse(["--in-ratio", "3"]))


def test_help_shows_the_defaults() -> None:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, Outer, nested=True, base=Outer(steps=77))
    text = parser.format_help()
    assert "how many (default: 77)" in text and "a ratio (default: 0.5)" in text
    assert "say more (default: off)" in text
