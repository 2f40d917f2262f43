"""Caption edits and bulk operations: preview, atomic apply, undo (with conflicts), and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio import captions
from studio.captions import (
    apply_changes,
    caption_status,
    preview_add_trigger,
    preview_fill_missing,
    preview_remove_trigger,
    preview_replace,
    read_caption,
    undo_available,
    undo_last,
    write_caption,
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "a.mp4").write_bytes(b"media a")
    (tmp_path / "b.mp4").write_bytes(b"media b")
    (tmp_path / "c.png").write_bytes(b"media c")
    (tmp_path / "a.txt").write_text("a dog runs", encoding="utf-8")
    (tmp_path / "b.txt").write_text("  \n", encoding="utf-8")
    return tmp_path


def media(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.mp4")) + sorted(folder.glob("*.png"))


def test_read_write_and_status(folder: Path) -> None:
    assert caption_status(folder / "a.mp4") == ("present", "a dog runs")
    assert caption_status(folder / "b.mp4") == ("empty", "")
    assert caption_status(folder / "c.png") == ("missing", "")
    write_caption(folder / "c.png", "a still\nmore")
    assert read_caption(folder / "c.png") == "a still\nmore"
    assert caption_status(folder / "c.png") == ("present", "a still")
    assert not list(folder.glob(".*.tmp"))  # atomic write leaves no temp files


def test_caption_extension_replaces_the_suffix(folder: Path) -> None:
    write_caption(folder / "a.mp4", "other", caption_extension=".caption")
    assert (folder / "a.caption").read_text() == "other"
    assert read_caption(folder / "a.mp4") == "a dog runs"


def test_write_refuses_nul_and_huge_text(folder: Path) -> None:
    with pytest.raises(ValueError, match="NUL"):
        write_caption(folder / "a.mp4", "bad\x00text")
    with pytest.raises(ValueError, match="at most"):
        write_caption(folder / "a.mp4", "x" * (captions.MAX_CAPTION_CHARS + 1))
    assert read_caption(folder / "a.mp4") == "a dog runs"


def test_fill_missing_touches_only_missing_and_empty(folder: Path) -> None:
    rows = preview_fill_missing(media(folder), "  a video of sks  ")
    assert [(Path(f).name, old, new) for f, old, new in rows] == [
        ("b.txt", "  \n", "a video of sks"), ("c.txt", None, "a video of sks")]
    assert read_caption(folder / "c.png") is None  # preview wrote nothing
    with pytest.raises(ValueError, match="empty"):
        preview_fill_missing(media(folder), "   ")


def test_add_and_remove_trigger(folder: Path) -> None:
    rows = preview_add_trigger(media(folder), "sks")
    assert {Path(f).name: new for f, _old, new in rows} == {"a.txt": "sks, a dog runs", "b.txt": "sks", "c.txt": "sks"}
    apply_changes(rows, folder=folder, label="add sks")
    assert preview_add_trigger(media(folder), "sks") == []  # already there: nothing to do
    # "sksx" starts with "sks" but is another word, so it is not treated as having the trigger.
    (folder / "a.txt").write_text("sksx dog")
    assert [Path(f).name for f, _o, _n in preview_add_trigger(media(folder), "sks")] == ["a.txt"]
    removed = preview_remove_trigger(media(folder), "sks")
    assert {Path(f).name: new for f, _old, new in removed} == {"b.txt": "", "c.txt": ""}


def test_find_and_replace_literal_and_case(folder: Path) -> None:
    (folder / "b.txt").write_text("A Dog (big) sits")
    rows = preview_replace(media(folder), "dog", "cat")
    assert [(Path(f).name, new) for f, _o, new in rows] == [("a.txt", "a cat runs")]
    rows = preview_replace(media(folder), "DOG", "cat", case_sensitive=False)
    assert sorted(new for _f, _o, new in rows) == ["A cat (big) sits", "a cat runs"]
    rows = preview_replace(media(folder), "(big)", r"\1")  # no regex: parentheses and backslashes are literal
    assert rows[0][2] == r"A Dog \1 sits"
    with pytest.raises(ValueError, match="empty"):
        preview_replace(media(folder), "", "x")


def test_apply_then_undo_restores_and_deletes_created_files(folder: Path) -> None:
    rows = preview_fill_missing(media(folder), "filled")
    record = apply_changes(rows, folder=folder, label="fill missing")
    assert len(record.entries) == 2 and read_caption(folder / "c.png") == "filled"
    assert undo_available(folder) == "fill missing"
    result = undo_last(folder)
    assert sorted(Path(f).name for f in result.restored) == ["b.txt", "c.txt"] and not result.conflicts
    assert read_caption(folder / "b.mp4") == "  \n" and read_caption(folder / "c.png") is None
    assert undo_available(folder) == ""
    with pytest.raises(LookupError, match="no bulk caption change"):
        undo_last(folder)


def test_undo_leaves_files_edited_after_the_bulk_change(folder: Path) -> None:
    apply_changes(preview_add_trigger(media(folder), "sks"), folder=folder, label="add")
    write_caption(folder / "a.mp4", "hand edited later")
    result = undo_last(folder)
    assert [Path(f).name for f in result.conflicts] == ["a.txt"]
    assert read_caption(folder / "a.mp4") == "hand edited later"
    assert read_caption(folder / "b.mp4") == "  \n"


def test_undo_is_a_stack(folder: Path) -> None:
    apply_changes(preview_add_trigger(media(folder), "one"), folder=folder, label="one")
    apply_changes(preview_replace(media(folder), "one", "two"), folder=folder, label="two")
    assert undo_last(folder).label == "two"
    assert read_caption(folder / "a.mp4") == "one, a dog runs"
    assert undo_last(folder).label == "one"
    assert read_caption(folder / "a.mp4") == "a dog runs"


def test_undo_history_can_live_outside_the_dataset(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    store = tmp_path_factory.mktemp("undo")
    apply_changes(preview_fill_missing(media(folder), "x"), folder=folder, label="fill", undo_dir=store)
    assert not (folder / captions.UNDO_FILE).exists() and len(list(store.iterdir())) == 1
    assert undo_last(folder, undo_dir=store).label == "fill"


def test_apply_refuses_files_outside_the_folder(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("elsewhere") / "x.txt"
    with pytest.raises(ValueError, match="outside the dataset folder"):
        apply_changes([(str(outside), None, "x")], folder=folder, label="bad")
    assert not outside.exists() and not (folder / captions.UNDO_FILE).exists()


def test_damaged_undo_file_is_reported(folder: Path) -> None:
    (folder / captions.UNDO_FILE).write_text("{broken")
    with pytest.raises(ValueError, match="damaged"):
        undo_last(folder)
