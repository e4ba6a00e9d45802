"""Boleto lines and PIX codes that look like the real thing (check digits, EMV tags, CRC16), and a QR stand-in."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from datetime import date

from regua.gateway.asaas import money
from regua.sandbox.simulator.payments import Payment

ASAAS_BANK_CODE = "461"


def _mod10(digits: str) -> int:
    total = 0
    for index, digit in enumerate(reversed(digits)):
        product = int(digit) * (2 if index % 2 == 0 else 1)
        total += product // 10 + product % 10
    return (10 - total % 10) % 10


def _mod11(digits: str) -> int:
    total = sum(int(digit) * (2 + index % 8) for index, digit in enumerate(reversed(digits)))
    check = 11 - total % 11
    return 1 if check in (0, 10, 11) else check


def _due_factor(due: date) -> int:
    """Days since 1997-10-07, restarting at 1000 after 9999 (which happened on 2025-02-22)."""
    days = (due - date(1997, 10, 7)).days
    return days if days <= 9999 else (days - 1000) % 9000 + 1000


def bar_code(payment: Payment) -> str:
    free_field = payment.nosso_numero.zfill(25)[-25:]
    value = str(payment.value_cents).zfill(10)[-10:]
    body = f"{ASAAS_BANK_CODE}9{_due_factor(payment.due_date):04d}{value}{free_field}"
    return body[:4] + str(_mod11(body)) + body[4:]


def typeable_line(code: str) -> str:
    free_field = code[19:]
    first = code[:4] + free_field[:5]
    second, third = free_field[5:15], free_field[15:]
    fields = (first + str(_mod10(first)), second + str(_mod10(second)), third + str(_mod10(third)))
    return "".join(fields) + code[4] + code[5:19]


def _tlv(tag: str, value: str) -> str:
    return f"{tag}{len(value):02d}{value}"


def _crc16(text: str) -> str:
    crc = 0xFFFF
    for byte in text.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return f"{crc:04X}"


def pix_payload(payment: Payment) -> str:
    """A structurally valid BR Code (EMV tags, CRC16) that no bank will pay."""
    account = _tlv("00", "br.gov.bcb.pix") + _tlv("25", f"pix.regua-sim.invalid/qr/v2/{payment.id}")
    payload = (
        _tlv("00", "01")
        + _tlv("01", "12")
        + _tlv("26", account)
        + _tlv("52", "0000")
        + _tlv("53", "986")
        + _tlv("54", format(money(payment.value_cents), "f"))
        + _tlv("58", "BR")
        + _tlv("59", "REGUA SIMULADOR")
        + _tlv("60", "SAO PAULO")
        + _tlv("62", _tlv("05", "***"))
        + "6304"
    )
    return payload + _crc16(payload)


def qr_image(payload: str, size: int = 21) -> str:
    """A small grayscale PNG, base64: a stand-in for the QR image, different for every payload."""
    bits = int(hashlib.sha256(payload.encode()).hexdigest() * 2, 16)
    rows = b"".join(
        b"\x00" + bytes(0 if (bits >> ((y * size + x) % 512)) & 1 else 255 for x in range(size)) for y in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode("ascii")
