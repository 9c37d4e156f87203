"""Unified Social Credit Codes (GB 32100-2015): real codes pass, every typo fails."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from creditflow.kernel.errors import InvalidInput
from creditflow.kernel.uscc import ALPHABET, WEIGHTS, check_character, make_uscc, validate_uscc

# Published codes: the example of GB 32100-2015 and two well-known companies' codes.
REAL_CODES = ["91350100M000100Y43", "914403001922038216", "91330100799655058B"]
FORBIDDEN_LETTERS = "IOZSV"


def expected_check_character(first17: str) -> str:
    """GB 32100-2015 §4.3 restated: weights 3^i mod 31, C18 = 31 - (sum mod 31), 31 written as 0."""
    total = sum(ALPHABET.index(ch) * pow(3, i, 31) for i, ch in enumerate(first17))
    return ALPHABET[(31 - total % 31) % 31]


def assert_refused(code: str, field: str = "uscc") -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        validate_uscc(code, field=field)
    assert info.value.code == "invalid_uscc"
    assert info.value.field == field
    return info.value


def test_alphabet_and_weights_are_the_standards() -> None:
    assert len(ALPHABET) == 31
    assert not set(ALPHABET) & set(FORBIDDEN_LETTERS)
    assert set(ALPHABET) == set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") - set(FORBIDDEN_LETTERS)
    assert list(WEIGHTS) == [pow(3, i, 31) for i in range(17)]


@pytest.mark.parametrize("code", REAL_CODES)
def test_real_codes_validate(code: str) -> None:
    assert validate_uscc(code) == code
    assert check_character(code[:17]) == code[17] == expected_check_character(code[:17])
    assert make_uscc(code[:17]) == code


@pytest.mark.parametrize("code", REAL_CODES)
def test_lower_case_is_accepted_and_upper_cased(code: str) -> None:
    assert validate_uscc(code.lower()) == code
    mixed = "".join(ch.lower() if i % 2 else ch for i, ch in enumerate(code))
    assert validate_uscc(mixed) == code


def test_surrounding_whitespace_is_stripped() -> None:
    assert validate_uscc(" 91330100799655058B\n") == "91330100799655058B"


@pytest.mark.parametrize("code", REAL_CODES)
def test_every_single_character_substitution_of_a_real_code_fails(code: str) -> None:
    for position in range(18):
        for replacement in ALPHABET + FORBIDDEN_LETTERS + "-#é中 ":
            if replacement == code[position]:
                continue
            assert_refused(code[:position] + replacement + code[position + 1 :])


@settings(max_examples=200, deadline=None)
@given(
    authority=st.sampled_from(ALPHABET),
    kind=st.sampled_from(ALPHABET),
    division=st.text(alphabet="0123456789", min_size=6, max_size=6),
    organisation=st.text(alphabet=ALPHABET, min_size=9, max_size=9),
    position=st.integers(min_value=0, max_value=17),
    replacement=st.sampled_from(ALPHABET),
)
def test_property_single_substitution_fails(
    authority: str, kind: str, division: str, organisation: str, position: int, replacement: str
) -> None:
    code = make_uscc(authority + kind + division + organisation)
    assert validate_uscc(code) == code
    if replacement != code[position]:
        assert_refused(code[:position] + replacement + code[position + 1 :])


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.text(alphabet=ALPHABET, min_size=2, max_size=2),
    division=st.text(alphabet="0123456789", min_size=6, max_size=6),
    organisation=st.text(alphabet=ALPHABET, min_size=9, max_size=9),
    position=st.integers(min_value=0, max_value=15),
)
def test_property_adjacent_transposition_in_first_17_fails(
    prefix: str, division: str, organisation: str, position: int
) -> None:
    code = make_uscc(prefix + division + organisation)
    swapped = code[:position] + code[position + 1] + code[position] + code[position + 2 :]
    if swapped != code:
        assert_refused(swapped)


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.text(alphabet=ALPHABET, min_size=2, max_size=2),
    division=st.text(alphabet="0123456789", min_size=6, max_size=6),
    organisation=st.text(alphabet=ALPHABET, min_size=9, max_size=9),
)
def test_property_make_uscc_round_trip(prefix: str, division: str, organisation: str) -> None:
    first17 = prefix + division + organisation
    code = make_uscc(first17)
    assert len(code) == 18
    assert code[:17] == first17
    assert code[17] == expected_check_character(first17)
    assert validate_uscc(code) == code
    assert validate_uscc(code.lower()) == code


@pytest.mark.parametrize(
    "code",
    ["", "9", "91330100799655058", "91330100799655058B0", "91330100799655058B" * 2, "9133 0100799655058B"],
)
def test_wrong_length_is_refused(code: str) -> None:
    error = assert_refused(code)
    assert "18 characters" in error.message or "alphabet" in error.message


@pytest.mark.parametrize("letter", FORBIDDEN_LETTERS)
def test_forbidden_letters_are_refused(letter: str) -> None:
    # Position 8 (the organisation code) may hold letters; I, O, Z, S, V are never allowed.
    code = "91350100M000100Y43"
    for candidate in (letter, letter.lower()):
        error = assert_refused(code[:8] + candidate + code[9:])
        assert "alphabet" in error.message
    with pytest.raises(ValueError):
        make_uscc(code[:8] + letter + code[9:17])


def test_division_code_must_be_digits() -> None:
    code = make_uscc("91A50100M000100Y4")  # right check character, letter in the division code
    error = assert_refused(code)
    assert "division" in error.message


def test_field_name_is_reported() -> None:
    assert_refused("91330100799655058C", field="seller_uscc")


@pytest.mark.parametrize("first17", ["", "9133010079965505", "913301007996550581", "9133010079965505I"])
def test_check_character_refuses_bad_prefixes(first17: str) -> None:
    with pytest.raises(ValueError):
        check_character(first17)


@pytest.mark.parametrize(("letters", "ligature"), [("FL", "\ufb02"), ("FF", "\ufb00"), ("FFL", "\ufb04")])
def test_ligatures_that_upper_case_to_valid_letters_are_refused(letters: str, ligature: str) -> None:
    # Regression: "ﬂ".upper() == "FL", so a 17-character string used to pass as an 18-character code.
    code = make_uscc("91350100MAFFL0001")
    disguised = code.replace(letters, ligature, 1)
    assert len(disguised) < 18
    assert_refused(disguised)
