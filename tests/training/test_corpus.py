"""Corpus discovery: identity folders and flat folders of videos, name validation, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.corpus import CorpusError, discover_corpus, validate_identity


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not decoded by discovery")
    return path


def test_one_identity_per_folder_with_videos_at_any_depth(tmp_path: Path) -> None:
    touch(tmp_path / "id10001" / "1zcIwhmdeo4" / "00001.mp4")
    touch(tmp_path / "id10001" / "7w0IBEWc9Qw" / "00001.mp4")
    touch(tmp_path / "id10001" / "notes.txt")
    touch(tmp_path / "id10002" / "clip.AVI")
    touch(tmp_path / "id10002" / ".cache" / "hidden.mp4")
    touch(tmp_path / ".trash" / "x.mp4")
    (tmp_path / "empty-folder").mkdir()

    corpus = discover_corpus(tmp_path)

    assert corpus.layout == "folders" and corpus.root == tmp_path.resolve()
    assert list(corpus.identities) == ["id10001", "id10002"]
    assert [p.name for p in corpus.identities["id10001"]] == ["00001.mp4", "00001.mp4"]
    # Same file name in two sub-folders: the keys (shard names) still differ, and say where from.
    assert [v.key for v in corpus] == ["1zcIwhmdeo4__00001", "7w0IBEWc9Qw__00001", "clip"]
    assert corpus.videos[0].relative == "id10001/1zcIwhmdeo4/00001.mp4"
    assert discover_corpus(tmp_path) == corpus  # stable across runs


def test_one_identity_per_file_in_a_flat_folder(tmp_path: Path) -> None:
    for name in ("000.mp4", "001.mkv", "002.mov", "003.webm", "004.avi", "005.txt", "a.mp4", "a.MP4x", ".6.mp4"):
        touch(tmp_path / name)
    touch(tmp_path / "a.avi")

    corpus = discover_corpus(tmp_path)

    assert corpus.layout == "files"
    assert list(corpus.identities) == ["000", "001", "002", "003", "004", "a"]
    keys = [v.key for v in corpus if v.identity == "a"]
    assert len(keys) == 2 and len(set(keys)) == 2 and all(k.startswith("a-") for k in keys)


def test_unsafe_names_are_rejected_with_a_reason_and_the_rest_kept(tmp_path: Path) -> None:
    touch(tmp_path / "good" / "v.mp4")
    touch(tmp_path / "bad name" / "v.mp4")
    touch(tmp_path / "-dash" / "v.mp4")

    corpus = discover_corpus(tmp_path)

    assert list(corpus.identities) == ["good"]
    assert sorted(path for path, _ in corpus.rejected) == ["-dash", "bad name"]
    assert all("not a usable identity name" in reason for _, reason in corpus.rejected)


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a..b", ".hidden", "x" * 129, "a b", "é"])
def test_path_tricks_are_not_identity_names(name: str) -> None:
    with pytest.raises(CorpusError, match="not a usable identity name"):
        validate_identity(name)


@pytest.mark.parametrize("name", ["id10001", "000", "Jane_Doe-2.v", "x" * 128])
def test_ordinary_names_are_identity_names(name: str) -> None:
    assert validate_identity(name) == name


def test_missing_empty_and_mixed_roots_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no such folder"):
        discover_corpus(tmp_path / "absent")
    with pytest.raises(CorpusError, match="holds no usable video"):
        discover_corpus(tmp_path)
    touch(tmp_path / "readme.txt")
    with pytest.raises(CorpusError, match="holds no usable video"):
        discover_corpus(tmp_path)
    touch(tmp_path / "person" / "v.mp4")
    touch(tmp_path / "loose.mp4")
    with pytest.raises(CorpusError, match="both identity folders"):
        discover_corpus(tmp_path)
