"""The released checkpoints of every family: URLs, how to verify them, and the download.

(``anyseg.checkpoint`` re-exports nothing from here: this module sits above it, since it loads a
download to check it.)

SAM's own files have published SHA-256s. MobileSAM and SAM-HQ publish none: their downloads are
checked by what their repositories do give (git's blob id of ``mobile_sam.pt``) and by loading
them strictly as the architecture they must have.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyseg.checkpoint import infer_config, load, sha256_file
from anyseg.config import get_preset
from anyseg.errors import CheckpointError, DownloadError
from anyseg.io import atomic_path
from anyseg.modeling import build_sam


@dataclass(frozen=True)
class OfficialCheckpoint:
    """A released checkpoint: where it is published and how a download is verified.

    Attributes:
        name: the file name.
        url: where its publisher serves it.
        sha256: its SHA-256, where the publisher gives one (SAM); None where none is published.
        size_bytes: its size where published, else None.
        family: the checkpoint family (:attr:`anyseg.config.SamConfig.family`).
        preset: the anyseg preset of its architecture: a download must load as exactly that.
        git_blob_sha1: for a file kept in a git repository, git's object id of it (a SHA-1 of
            ``b"blob <size>\\0" + content``, from the repository's tree): checked when no SHA-256
            is published.
    """

    name: str
    url: str
    sha256: str | None
    size_bytes: int | None
    family: str = "sam"
    preset: str = ""
    git_blob_sha1: str | None = None


OFFICIAL_CHECKPOINTS: dict[str, OfficialCheckpoint] = {
    "vit_h": OfficialCheckpoint(
        "sam_vit_h_4b8939.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        2564550879,
        preset="vit_h",
    ),
    "vit_l": OfficialCheckpoint(
        "sam_vit_l_0b3195.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        1249524607,
        preset="vit_l",
    ),
    "vit_b": OfficialCheckpoint(
        "sam_vit_b_01ec64.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        375042383,
        preset="vit_b",
    ),
}
# Facts from the publishers' repositories: ChaoningZhang/MobileSAM keeps mobile_sam.pt in git
# (tree of 34bbbfd, unchanged since a509aac, 2023-06-29); SysCV/sam-hq's README links its files on
# the Hugging Face hub (lkeab/hq-sam). Neither publishes a SHA-256.
FAMILY_CHECKPOINTS: dict[str, OfficialCheckpoint] = {
    "mobile_sam": OfficialCheckpoint(
        "mobile_sam.pt",
        "https://github.com/ChaoningZhang/MobileSAM/raw/34bbbfdface3c18e5221aa7de6032d7220c6c6a1"
        "/weights/mobile_sam.pt",
        None,
        None,
        family="mobile_sam",
        preset="vit_t",
        git_blob_sha1="7ef2d090979fd9853adf17b7a99c8b94a1c5a6a7",
    ),
    **{
        f"hq_{size}": OfficialCheckpoint(
            f"sam_hq_{size}.pth",
            f"https://huggingface.co/lkeab/hq-sam/resolve/main/sam_hq_{size}.pth",
            None,
            None,
            family="light_hq_sam" if size == "vit_tiny" else "sam_hq",
            preset=f"hq_{size}",
        )
        for size in ("vit_b", "vit_l", "vit_h", "vit_tiny")
    },
}
RELEASED_CHECKPOINTS: dict[str, OfficialCheckpoint] = {**OFFICIAL_CHECKPOINTS, **FAMILY_CHECKPOINTS}


def git_blob_sha1(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Git's object id of a file's content (what a repository's tree lists for it)."""
    digest = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(
    name: str,
    dest_dir: str | os.PathLike[str] = ".",
    url: str | None = None,
    sha256: str | None = None,
    timeout: float = 10.0,
    progress: bool = True,
) -> Path:
    """Download a released checkpoint (see :data:`RELEASED_CHECKPOINTS`) and verify it.

    The file is streamed to a temporary file beside the destination and renamed only once it is
    verified; an existing file that verifies is kept. Verification, strongest first: the SHA-256
    (``sha256`` or the published one), else git's blob id from the publisher's repository; and
    for a file with no published SHA-256, also that it loads strictly as its family's
    architecture. ``url``/``sha256`` override the published ones (mirrors, tests).
    """
    if name not in RELEASED_CHECKPOINTS:
        raise DownloadError(
            f"unknown checkpoint {name!r}; choose one of {', '.join(RELEASED_CHECKPOINTS)}"
        )
    info = RELEASED_CHECKPOINTS[name]
    url = url or info.url
    expected = (sha256 or info.sha256 or "").lower() or None
    dest = Path(dest_dir) / info.name
    if dest.is_file() and _verify(dest, info, expected) is None:
        return dest
    digest = hashlib.sha256()
    with atomic_path(dest, suffix=".part") as tmp:
        with open(tmp, "wb") as out:
            _stream(url, out, digest, timeout=timeout, progress=progress, desc=info.name)
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            raise DownloadError(
                f"SHA-256 mismatch for {url}: expected {expected}, got {actual}; file discarded"
            )
        problem = _verify(Path(tmp), info, expected, sha_checked=True)
        if problem:
            raise DownloadError(f"{url}: {problem}; file discarded")
    return dest


def verification(info: OfficialCheckpoint, sha256: str | None = None) -> str:
    """How a download of ``info`` is verified, in words (for the CLI)."""
    if sha256 or info.sha256:
        return "SHA-256 verified"
    checks = ["loads strictly as " + info.preset]
    if info.git_blob_sha1:
        checks.insert(0, "git blob id verified")
    return ", ".join(checks) + " (no SHA-256 is published)"


def _verify(
    path: Path, info: OfficialCheckpoint, expected: str | None, sha_checked: bool = False
) -> str | None:
    """None if ``path`` is the file ``info`` describes, else what is wrong."""
    if expected is not None:
        if sha_checked:
            return None
        actual = sha256_file(path)
        return None if actual == expected else f"SHA-256 {actual} is not {expected}"
    if info.git_blob_sha1 and (actual := git_blob_sha1(path)) != info.git_blob_sha1:
        return f"git blob id {actual} is not the published {info.git_blob_sha1}"
    if info.preset:
        try:
            model = load(path)
        except CheckpointError as exc:
            return f"not a loadable checkpoint ({exc})"
        # Compare what the tensors say (a preset's unused fields leave no trace in them).
        want = infer_config(build_sam(get_preset(info.preset)).state_dict())
        if model.config != want:
            return f"its architecture is not {info.preset}'s"
    return None


def _stream(url: str, out: Any, digest: Any, *, timeout: float, progress: bool, desc: str) -> None:
    """Copy ``url`` to the open file ``out``, updating ``digest``; errors as DownloadError."""
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason: object = getattr(exc, "reason", exc)
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
        raise DownloadError(f"cannot download {url}: {reason} (are you offline?)") from None
    with response:
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=desc)
        try:
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
                if bar is not None:
                    bar.update(len(block))
        except (TimeoutError, OSError) as exc:
            raise DownloadError(f"download of {url} broke off: {exc}") from None
        finally:
            if bar is not None:
                bar.close()
