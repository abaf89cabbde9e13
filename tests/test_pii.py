"""PII redaction: each entity type is found, placeholders are consistent inside one record, and
no clear value survives."""

from __future__ import annotations

import pytest

from tuneloop.governance.pii import Redactor


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


@pytest.mark.parametrize(("text", "value", "entity"), [
    ("Write to maria.lopez@example.org today", "maria.lopez@example.org", "EMAIL_ADDRESS"),
    ("Call me on (415) 555-0132 after 5", "(415) 555-0132", "PHONE_NUMBER"),
    ("my number is +44 20 7946 0958", "+44 20 7946 0958", "PHONE_NUMBER"),
    ("card 4539 1488 0343 6467 was charged", "4539 1488 0343 6467", "CREDIT_CARD"),
    ("pay to DE89 3704 0044 0532 0130 00 please", "DE89 3704 0044 0532 0130 00", "IBAN_CODE"),
    ("the server 10.20.30.40 refused", "10.20.30.40", "IP_ADDRESS"),
    ("my SSN is 536-90-4211", "536-90-4211", "US_SSN"),
    ("config has api_key=q8Zr2LmX91fTbVa0 in it", "q8Zr2LmX91fTbVa0", "SECRET"),
    ("export OPENAI=sk-proj-AbCdEfGhIjKlMnOpQrStUv", "sk-proj-AbCdEfGhIjKlMnOpQrStUv", "SECRET"),
    ("password: hunter2!x", "hunter2!x", "SECRET"),
    ("Hi, my name is Sofia Brandt and I need help", "Sofia Brandt", "PERSON"),
    ("Regards,\nOlumide Bakare", "Olumide Bakare", "PERSON"),
])
def test_each_entity_type_is_replaced_by_its_placeholder(redactor: Redactor, text: str,
                                                         value: str, entity: str) -> None:
    result = redactor.redact(text)
    assert value not in result.text
    assert f"<{entity}_1>" in result.text
    assert result.counts.get(entity) == 1


def test_card_number_failing_luhn_is_not_a_card(redactor: Redactor) -> None:
    result = redactor.redact("order 4539 1488 0343 6468 shipped")
    assert "CREDIT_CARD" not in result.counts


def test_iban_with_a_wrong_checksum_is_not_an_iban(redactor: Redactor) -> None:
    assert "IBAN_CODE" not in redactor.redact("ref DE00 3704 0044 0532 0130 00").counts


def test_same_name_gets_the_same_placeholder_within_one_record(redactor: Redactor) -> None:
    first, second = redactor.redact_many([
        "Hi, I'm Anna Berg. My colleague Tom Reyes and Anna Berg both lost access.",
        "Hi Anna,\n\nwe restored access for you and Tom Reyes.",
    ])
    assert first.text == ("Hi, I'm <PERSON_1>. My colleague <PERSON_2> and <PERSON_1> both lost "
                          "access.")
    assert second.text == "Hi <PERSON_1>,\n\nwe restored access for you and <PERSON_2>."
    assert first.counts == {"PERSON": 3}


def test_numbering_restarts_for_each_record(redactor: Redactor) -> None:
    assert redactor.redact("Dear Lena Fischer").text == "Dear <PERSON_1>"
    assert redactor.redact("Dear Marco Rossi").text == "Dear <PERSON_1>"


def test_two_emails_get_two_numbers_and_repeat_consistently(redactor: Redactor) -> None:
    text = "from a@x.io to b@y.io, cc a@x.io"
    assert redactor.redact(text).text == ("from <EMAIL_ADDRESS_1> to <EMAIL_ADDRESS_2>, "
                                          "cc <EMAIL_ADDRESS_1>")


def test_organisations_and_product_words_are_not_people(redactor: Redactor) -> None:
    text = "Best regards,\nQuillstack Support\nLong PLC bought the Team Folders add-on in May."
    assert redactor.redact(text).text == text


def test_only_the_configured_entities_are_redacted() -> None:
    result = Redactor(["EMAIL_ADDRESS"]).redact("Anna Berg, anna@berg.de")
    assert result.text == "Anna Berg, <EMAIL_ADDRESS_1>"


def test_unknown_entity_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="cannot redact 'PASSPORT'"):
        Redactor(["PASSPORT"])
