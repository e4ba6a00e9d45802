"""Receipts are taken by what their first bytes say they are, and up to 5 MB."""

from __future__ import annotations

import pytest

from regua.portal.receipts import MAX_RECEIPT_BYTES, ReceiptRefused, check_receipt, sniff_type

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"


@pytest.mark.parametrize(
    ("content", "expected"),
    [(PDF, "application/pdf"), (PNG, "image/png"), (JPEG, "image/jpeg"), (b"GIF89a", None), (b"<html>", None)],
)
def test_the_type_comes_from_the_magic_bytes(content: bytes, expected: str | None) -> None:
    assert sniff_type(content) == expected


def test_an_empty_an_oversized_or_a_disguised_file_is_refused_in_portuguese() -> None:
    with pytest.raises(ReceiptRefused, match="Escolha o arquivo"):
        check_receipt(b"")
    with pytest.raises(ReceiptRefused, match="5 MB"):
        check_receipt(PDF + b"0" * MAX_RECEIPT_BYTES)
    with pytest.raises(ReceiptRefused, match="PDF ou uma imagem"):
        check_receipt(b"MZ\x90\x00 an executable named comprovante.pdf")
    assert check_receipt(PDF + b"0" * (MAX_RECEIPT_BYTES - len(PDF))) == "application/pdf"
