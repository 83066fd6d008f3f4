"""Reading CSV files as they come from spreadsheets and CRMs."""

from pathlib import Path

import pytest

from dialer.errors import InputError
from dialer.loading.csv_source import CsvSource, UndecodableError, sniff_delimiter


def records(path: Path, encoding: str = "utf-8") -> tuple[CsvSource, list[tuple[int, list[str]]]]:
    source = CsvSource.open(path, encoding)
    return source, list(source.records())


def write(tmp_path: Path, data: bytes, name: str = "c.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_sniffs_delimiter(tmp_path: Path, delimiter: str) -> None:
    text = delimiter.join(["phone", "name", "city"]) + "\n"
    text += delimiter.join(["+919845012345", "Asha", "Pune"]) + "\n"
    source, rows = records(write(tmp_path, text.encode()))
    assert source.delimiter == delimiter
    assert source.header == ["phone", "name", "city"]
    assert rows == [(2, ["+919845012345", "Asha", "Pune"])]


def test_delimiter_inside_quotes_does_not_count() -> None:
    assert sniff_delimiter('"a;b;c",d,e\n') == ","
    assert sniff_delimiter("phone\n") == ","


def test_bom_crlf_quotes_embedded_newlines_and_blank_lines(tmp_path: Path) -> None:
    data = (
        b"\xef\xbb\xbfphone,name,note\r\n"
        b"\r\n"
        b'+919845012345,"Iyer, Asha","line one\r\nline two"\r\n'
        b"\r\n"
        b'+919845012346,Ravi,"said ""hi"""\r\n'
    )
    source, rows = records(write(tmp_path, data))
    assert source.header == ["phone", "name", "note"]
    assert rows == [
        (3, ["+919845012345", "Iyer, Asha", "line one\r\nline two"]),
        (6, ["+919845012346", "Ravi", 'said "hi"']),
    ]


def test_last_line_without_newline(tmp_path: Path) -> None:
    _, rows = records(write(tmp_path, b"phone\n1\n2"))
    assert rows == [(2, ["1"]), (3, ["2"])]


def test_undecodable_bytes_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"phone,name\n1,ok\n2,ok\n3,Jos\xe9\n")
    with pytest.raises(UndecodableError, match=r"line 4: bytes that are not valid utf-8"):
        records(path)


def test_declared_encoding_reads_the_same_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, "phone,name\n1,José\n".encode("latin-1"))
    _, rows = records(path, "latin-1")
    assert rows == [(2, ["1", "José"])]


def test_undecodable_line_is_exact_across_blocks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("dialer.loading.csv_source.BLOCK_SIZE", 7)
    path = write(tmp_path, b"phone\n" + b"123\n" * 10 + b"\xff\n")
    with pytest.raises(UndecodableError, match="line 12"):
        records(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        CsvSource.open(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="empty"):
        CsvSource.open(write(tmp_path, b""))
    with pytest.raises(InputError, match="no header"):
        records(write(tmp_path, b"\n\n  \n", "blank.csv"))


def test_duplicate_header_names(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="twice: phone"):
        records(write(tmp_path, b"phone,name,phone\n1,2,3\n"))


def test_hash_covers_whole_file(tmp_path: Path) -> None:
    import hashlib

    data = b"phone\n" + b"+919845012345\n" * 1000
    source, _ = records(write(tmp_path, data))
    assert source.sha256 == hashlib.sha256(data).hexdigest()
    assert source.bytes_read == len(data)
