"""The ISO 20022 rules of settlement accounts (`creditflow.financing.accounts`), as properties: every value
the rules accept serialises into a pain.001.001.09 file that validates against the official schema, and
no value with a control character is ever accepted."""

from __future__ import annotations

import datetime as dt
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from creditflow.financing import accounts, pain001
from creditflow.kernel.errors import InvalidInput

DEBTOR = pain001.Account("徐州工程机械集团有限公司", "6222020200110001", "ICBKCNBJ")


def file_with(creditor: pain001.Account) -> bytes:
    return pain001.build(
        message_id="CF0123456789",
        created=dt.datetime(2026, 9, 1, 9, tzinfo=dt.UTC),
        debtor=DEBTOR,
        execution_date=dt.date(2026, 9, 1),
        transfers=[pain001.CreditTransfer("E2E1", 100, creditor, "creditflow")],
    )


names = st.one_of(
    st.text(max_size=160),  # anything at all
    st.text(st.characters(categories=("L", "M", "N", "P", "S", "Zs")), min_size=1, max_size=150),
    st.text(st.sampled_from("精艺钢铁有限公司 Co.,Ltd-()'/"), min_size=1, max_size=145),
)


@settings(max_examples=300, deadline=None)
@given(names)
def test_an_accepted_name_always_makes_a_valid_file_and_a_refused_one_says_why(name: str) -> None:
    problem = accounts.name_problem(name)
    if problem is None:
        pain001.validate(file_with(pain001.Account(name, "6222020200112233", "ICBKCNBJ")))
        assert 1 <= len(name) <= 140
        assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in name)
    else:
        with pytest.raises(InvalidInput) as caught:
            accounts.check_account(name, "6222020200112233", "ICBKCNBJ")
        assert (caught.value.code, caught.value.field) == ("invalid_account_name", "account_name")


@given(st.text(min_size=1, max_size=20), st.sampled_from([chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]]))
def test_a_control_character_is_never_accepted(text: str, control: str) -> None:
    assert accounts.name_problem(text[:10] + control + text[10:]) is not None


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.from_regex(r"[A-Za-z0-9]{1,34}", fullmatch=True), st.text(max_size=40)))
def test_an_accepted_account_number_always_makes_a_valid_file(number: str) -> None:
    if accounts.number_problem(number) is None:
        pain001.validate(file_with(pain001.Account("Steel", number, "ICBKCNBJ")))
    else:
        with pytest.raises(InvalidInput) as caught:
            accounts.check_account("Steel", number, "ICBKCNBJ")
        assert caught.value.code == "invalid_account_number"


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.from_regex(r"[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?", fullmatch=True), st.text(max_size=12)))
def test_an_accepted_bic_always_makes_a_valid_file(bic: str) -> None:
    if accounts.bic_problem(bic) is None:
        pain001.validate(file_with(pain001.Account("Steel", "62220001", bic)))
    else:
        with pytest.raises(InvalidInput) as caught:
            accounts.check_account("Steel", "62220001", bic)
        assert caught.value.code == "invalid_bic"


@pytest.mark.parametrize("iban", ["DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606"])
def test_a_valid_iban_goes_into_the_iban_element(iban: str) -> None:
    assert accounts.number_problem(iban) is None
    data = file_with(pain001.Account("Steel", iban, "DEUTDEFF"))
    assert f"<IBAN>{iban}</IBAN>".encode() in data


@pytest.mark.parametrize(
    "value",
    ["DE89370400440532013001", "GB00WEST12345698765432", "6222-0202", "6222 0202", "", "6" * 35, "账号123"],
)
def test_bad_account_numbers_are_refused(value: str) -> None:
    assert accounts.number_problem(value) is not None


@pytest.mark.parametrize(
    "name",
    [
        "Factory\t",
        "Fac\ntory",
        "A\u200bB",
        "A\u202eB",
        "A\u00a0B",
        " A",
        "A ",
        "e\u0301",
        "\ue000",
        "A\u2028B",
        "x" * 141,
    ],
)
def test_names_a_person_could_not_read_as_they_are_are_refused(name: str) -> None:
    assert accounts.name_problem(name) is not None


@pytest.mark.parametrize("name", ["徐州钢铁有限公司", "Xuzhou Steel Co., Ltd.", "精" * 140, "江苏\u3000精艺", "é"])
def test_chinese_and_latin_names_are_accepted(name: str) -> None:
    assert accounts.name_problem(name) is None
