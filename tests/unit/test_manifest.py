"""Manifest parsing: columns, per-row validation, spreadsheet quirks."""

import pytest

from app.core.errors import InvalidInputError
from app.ingest.manifest import ManifestRow, RowError, parse_manifest, read_manifest

HEADER = "factory_id,factory_name,region,product_id,title,category,price,moq,image,colour\n"


def test_zero_price_and_moq_of_one_are_valid():
    (row,) = parse_manifest(HEADER + "F1,Acme,Yiwu,P1,Mug,mug,0,1,img/a.jpg,\n")
    assert (row.price, row.moq, row.attributes) == (0.0, 1, {})
    (row,) = parse_manifest(HEADER + "F1,Acme,Yiwu,P1,Mug,mug,0,2147483647,img/a.jpg,\n")
    assert row.moq == 2**31 - 1


def test_valid_row_and_extra_columns_become_attributes():
    (row,) = parse_manifest(HEADER + "F1,Acme,Yiwu,P1,Mug,mug,2.50,100,img/a.jpg,red\n")
    assert isinstance(row, ManifestRow)
    assert (row.line, row.factory_id, row.product_id, row.price, row.moq) == (2, "F1", "P1", 2.5, 100)
    assert row.attributes == {"colour": "red"}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("F1,Acme,Yiwu,P1,Mug,mug,cheap,100,a.jpg,", "price 'cheap' is not a number"),
        ("F1,Acme,Yiwu,P1,Mug,mug,1,0,a.jpg,", "moq '0' is out of range"),
        ("F1,Acme,Yiwu,P1,Mug,mug,1,2.5,a.jpg,", "moq '2.5' is not a whole number"),
        ("F1,Acme,Yiwu,P1,Mug,mug,-3,,a.jpg,", "price '-3' is out of range"),
        ("F1,Acme,Yiwu,P1,Mug,mug,nan,,a.jpg,", "price 'nan' is out of range"),
        ("F1,Acme,Yiwu,P1,Mug,mug,NaN,,a.jpg,", "price 'NaN' is out of range"),
        ("F1,Acme,Yiwu,P1,Mug,mug,inf,,a.jpg,", "price 'inf' is out of range"),
        ("F1,Acme,Yiwu,P1,Mug,mug,1e999,,a.jpg,", "price '1e999' is out of range"),
        ("F1,Acme,Yiwu,P1,Mug,mug,1,-1,a.jpg,", "moq '-1' is out of range"),
        ("F1,Acme,Yiwu,P1,Mug,mug,1,1000000000000000000000000000000,a.jpg,", "is out of range"),
        ("F1,Acme,Yiwu,P1,Mug,mug,1,2147483648,a.jpg,", "moq '2147483648' is out of range"),
        (",Acme,Yiwu,P1,Mug,mug,1,1,a.jpg,", "factory_id is empty"),
        ("F1,Acme,Yiwu,P 1/../x,Mug,mug,1,1,a.jpg,", "product_id"),
        ("F1,Acme,Yiwu,P1,Mug,mug,1,1,,", "image is empty"),
    ],
)
def test_bad_rows_become_row_errors_with_line_numbers(line, reason):
    rows = parse_manifest(HEADER + "F1,Acme,Yiwu,P0,Ok,mug,1,1,ok.jpg,\n" + line + "\n")
    assert isinstance(rows[0], ManifestRow)
    assert isinstance(rows[1], RowError) and rows[1].line == 3
    assert reason in rows[1].reason


def test_missing_required_column_fails_the_whole_manifest():
    with pytest.raises(InvalidInputError, match="image"):
        parse_manifest("factory_id,product_id\nF1,P1\n")


def test_byte_order_mark_and_padding_are_tolerated(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("\ufefffactory_id, product_id ,image\nF1,P1, a.jpg \n".encode())
    (row,) = read_manifest(path)
    assert (row.factory_id, row.product_id, row.image) == ("F1", "P1", "a.jpg")


def test_non_utf8_manifest_is_a_clear_error(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(b"factory_id,product_id,image\nF1,P1,\xff\xfe.jpg\n")
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        read_manifest(path)


def test_a_manifest_over_the_row_limit_is_refused_without_being_read_whole(tmp_path):
    from app.ingest.manifest import ManifestLimits

    path = tmp_path / "m.csv"
    with path.open("w") as handle:
        handle.write("factory_id,product_id,image\n")
        handle.writelines(f"F1,P{i},{i}.jpg\n" for i in range(300_000))
    with pytest.raises(InvalidInputError, match="more than 1,000 rows"):
        read_manifest(path, ManifestLimits(max_rows=1000))
    assert len(read_manifest(path, ManifestLimits(max_rows=300_000))) == 300_000


def test_columns_and_cells_are_bounded():
    from app.ingest.manifest import ManifestLimits

    wide = ",".join(["factory_id", "product_id", "image", *(f"c{i}" for i in range(70))])
    with pytest.raises(InvalidInputError, match="73 columns; the limit is 64"):
        parse_manifest(wide + "\n")
    rows = parse_manifest(
        HEADER
        + "F1,"
        + "N" * 256
        + ",Yiwu,P1,Mug,mug,1,1,a.jpg,\n"
        + "F1,Acme,Yiwu,P2,"
        + "T" * 501
        + ",mug,1,1,a.jpg,\n"
        + "F1,Acme,Yiwu,P3,Mug,mug,1,1,a.jpg,"
        + "c" * 2049
        + "\n"
        + "F1,Acme,Yiwu,P4,Mug,mug,1,1,a.jpg,"
        + "c" * 2000
        + "\n",
        ManifestLimits(max_attributes_bytes=1000),
    )
    reasons = [row.reason for row in rows]
    assert "factory_name is longer than 255" in reasons[0] and "title is longer than 500" in reasons[1]
    assert "longer than 2048" in reasons[2] and "larger than 1,000 bytes" in reasons[3]
