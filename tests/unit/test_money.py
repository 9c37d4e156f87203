"""Money in integer fen: exact parsing, range checks, formatting."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from creditflow.kernel.errors import InvalidInput
from creditflow.kernel.money import (
    MAX_AMOUNT_MINOR,
    check_amount_minor,
    check_currency,
    format_minor,
    parse_major,
)


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("1,000,000.00", 100_000_000),
        ("0.01", 1),
        ("0.10", 10),
        ("0.1", 10),
        ("1", 100),
        ("600000", 60_000_000),
        ("12.34", 1234),
        ("12.340000", 1234),
        (" 5 ", 500),
        ("1,234,567.89", 123_456_789),
        ("1000000000000000", MAX_AMOUNT_MINOR),
        ("999,999,999,999,999.99", MAX_AMOUNT_MINOR - 1),
    ],
)
def test_parse_major_exact(text: str, fen: int) -> None:
    result = parse_major(text)
    assert result == fen
    assert type(result) is int


@pytest.mark.parametrize(
    "text",
    [
        "0.001",
        "1.005",
        "0.009",
        "-5",
        "-0.01",
        "0",
        "0.00",
        "-0",
        "abc",
        "",
        "   ",
        "1.2.3",
        "12 34",
        "¥5",
        "5 CNY",
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-Infinity",
        "inf",
        "1000000000000000.01",
        "10000000000000000",
    ],
)
def test_parse_major_refuses(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_major(text)
    assert info.value.code == "invalid_amount"
    assert info.value.field == "amount"


def test_parse_major_reports_the_given_field() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_major("0.001", field="face_value")
    assert (info.value.code, info.value.field) == ("invalid_amount", "face_value")
    with pytest.raises(InvalidInput) as info:
        parse_major("-1", field="face_value")
    assert (info.value.code, info.value.field) == ("invalid_amount", "face_value")


def test_parse_major_refuses_huge_exponent() -> None:
    with pytest.raises(InvalidInput):
        parse_major("1e999999")


def test_parse_major_refuses_a_fraction_of_a_fen_beyond_28_digits() -> None:
    with pytest.raises(InvalidInput):
        parse_major("1.0000000000000000000000000001")


@pytest.mark.parametrize("value", [1, 2, 100, 123_456_789, MAX_AMOUNT_MINOR])
def test_check_amount_minor_accepts(value: int) -> None:
    assert check_amount_minor(value) == value


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        1.0,
        100.0,
        0.5,
        "100",
        b"100",
        Decimal(100),
        None,
        [100],
        0,
        -1,
        -(10**18),
        MAX_AMOUNT_MINOR + 1,
        2**63,
    ],
    ids=repr,
)
def test_check_amount_minor_refuses(value: object) -> None:
    with pytest.raises(InvalidInput) as info:
        check_amount_minor(value)
    assert info.value.code == "invalid_amount"
    assert info.value.field == "amount_minor"


def test_check_amount_minor_reports_the_given_field() -> None:
    with pytest.raises(InvalidInput) as info:
        check_amount_minor(0, field="principal_minor")
    assert (info.value.code, info.value.field) == ("invalid_amount", "principal_minor")


def test_check_currency() -> None:
    assert check_currency("CNY") == "CNY"
    for bad in ("USD", "cny", "", None, 156):
        with pytest.raises(InvalidInput) as info:
            check_currency(bad)
        assert (info.value.code, info.value.field) == ("invalid_currency", "currency")


@pytest.mark.parametrize(
    ("fen", "currency", "text"),
    [
        (123_456_789, "CNY", "1,234,567.89 CNY"),
        (0, "CNY", "0.00 CNY"),
        (1, "CNY", "0.01 CNY"),
        (10, "CNY", "0.10 CNY"),
        (100, "CNY", "1.00 CNY"),
        (100_000_000, "CNY", "1,000,000.00 CNY"),
        (MAX_AMOUNT_MINOR, "CNY", "1,000,000,000,000,000.00 CNY"),
        (-5, "CNY", "-0.05 CNY"),
        (-123_456_789, "CNY", "-1,234,567.89 CNY"),
        (250, "USD", "2.50 USD"),
    ],
)
def test_format_minor(fen: int, currency: str, text: str) -> None:
    assert format_minor(fen, currency) == text


def test_format_minor_defaults_to_cny() -> None:
    assert format_minor(99) == "0.99 CNY"


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=MAX_AMOUNT_MINOR))
def test_format_then_parse_round_trip(fen: int) -> None:
    text = format_minor(fen)
    assert text.endswith(" CNY")
    assert parse_major(text.removesuffix(" CNY")) == fen
