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


@pytest.mark.parametrize("phone", ["030 12345678", "06-12 34 56 78", "(02) 9876 5432",
                                   "0664/1234567", "+32(0)690-743915", "(+358) 232860129",
                                   "06 1 234 5678", "0612345678", "3922153973",
                                   "00420 608 777 631", "(71)/886-4287", "030/1234567",
                                   "28194821", "13812345678"])
def test_national_phone_formats_with_and_without_country_code(redactor: Redactor,
                                                              phone: str) -> None:
    assert redactor.redact(f"sure, it's {phone}").text == "sure, it's <PHONE_NUMBER_1>"


@pytest.mark.parametrize(("text", "expected"), [
    ("thx, agnieszka", "thx, <PERSON_1>"),
    ("ping joão silva about the invoice", "ping <PERSON_1> about the invoice"),
    ("Looping in @karolina_nowak now", "Looping in @<PERSON_1> now"),
    ("[09:14] søren: hi, the export fails", "[09:14] <PERSON_1>: hi, the export fails"),
    ("user=7 name=dagný jónsdóttir plan=pro", "user=7 name=<PERSON_1> plan=pro"),
    ("Hi, my name is Łukasz Wiśniewski.", "Hi, my name is <PERSON_1>."),
])
def test_names_in_any_case_and_script_after_a_cue(redactor: Redactor, text: str,
                                                  expected: str) -> None:
    assert redactor.redact(text).text == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Привет, меня зовут Иван Петров.", "Привет, меня зовут <PERSON_1>."),
    ("[09:14] 王伟: the export fails", "[09:14] <PERSON_1>: the export fails"),
    ("user=7 name=דוד plan=pro", "user=7 name=<PERSON_1> plan=pro"),
    ("[09:14] रति रॉय: hi", "[09:14] <PERSON_1>: hi"),
    ("[09:15] เยาวรัตน์ นามขำ: sure", "[09:15] <PERSON_1>: sure"),
    ("Thanks!\n--\n王伟\nOperations", "Thanks!\n--\n<PERSON_1>\nOperations"),
    ("see below\n--\nanna berg\nOps lead", "see below\n--\n<PERSON_1>\nOps lead"),
])
def test_names_in_other_scripts_and_signatures(redactor: Redactor, text: str,
                                               expected: str) -> None:
    assert redactor.redact(text).text == expected


@pytest.mark.parametrize("text", ["Версия 4.2: Быстрый Поиск и Тёмная Тема для Android.",
                                  "Ελληνική Έκδοση διαθέσιμη από σήμερα."])
def test_capitalised_greek_and_cyrillic_words_are_not_names(redactor: Redactor,
                                                            text: str) -> None:
    assert redactor.redact(text).text == text


def test_e_mail_addresses_with_non_ascii_local_parts_and_domains(redactor: Redactor) -> None:
    text = "write to jürgen.müller@bücher.de or josé@mañana.mx"
    assert redactor.redact(text).text == "write to <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_2>"


@pytest.mark.parametrize("text", ["order 48213377 shipped", "Invoice no. 48213377 is overdue",
                                  "ticket #48213377", "snapshot 20250304 was restored"])
def test_identifiers_and_dates_in_one_block_are_not_phones(redactor: Redactor,
                                                           text: str) -> None:
    assert redactor.redact(text).text == text


def test_release_notes_without_personal_data_are_unchanged(redactor: Redactor) -> None:
    notes = ("Hey,\n\nRelease 7.2: SCIM sync, an SLA of 99.95% for Enterprise, IBAN checks in "
             "billing, and CVE-2024-12345 patched (build 22631, ports 8443 and 9443).")
    assert redactor.redact(notes).text == notes
