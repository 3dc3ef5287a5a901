"""Atomic files: complete or absent, with the permissions the umask gives, and no umask changes."""

import os

import numpy as np
import pytest

from emotiontrack.errors import OutputError
from emotiontrack.files import atomic_file, make_private_dir, write_jpeg, write_text


def test_a_failed_write_leaves_neither_the_file_nor_its_temporary(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert not target.exists() and list((tmp_path / "sub").iterdir()) == []
    write_text(target, "whole")
    assert target.read_text() == "whole" and [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_files_and_folders_get_the_umask_permissions_and_the_umask_stays(tmp_path):
    previous = os.umask(0o027)
    try:
        path = write_text(tmp_path / "a.txt", "x")
        folder = make_private_dir(tmp_path, ".staging-")
        assert os.umask(0o027) == 0o027  # nothing changed it meanwhile
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o640
    assert folder.stat().st_mode & 0o777 == 0o750 and folder.name.startswith(".staging-")


def test_temporary_names_keep_the_extension_writers_choose_formats_by(tmp_path):
    with atomic_file(tmp_path / "model.keras") as tmp:
        assert tmp.suffix == ".keras" and tmp.parent == tmp_path and tmp.name.startswith(".model.")
        tmp.write_bytes(b"x")


def test_a_jpeg_that_cannot_be_encoded_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="could not encode"):
        write_jpeg(tmp_path / "empty.jpg", np.zeros((0, 0, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
