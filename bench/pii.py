"""PII benchmark: precision, recall and speed of tuneloop's redactor on labelled support tickets.

Tickets are generated with Faker (names from seven locales, e-mails, phones, Luhn-valid cards,
IBANs, SSNs, IPv4/IPv6 addresses, secrets) inside realistic support text, with every span labelled.
A finding counts when it overlaps a labelled span of the same type. The same set goes through
Presidio's analyzer with its default recognizers on a blank spaCy pipeline (its default spaCy
model cannot be downloaded here, so it has no person-name model).

    .venv/bin/python bench/pii.py [--quick] [--records N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections import defaultdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from faker import Faker
from rich.console import Console
from rich.table import Table

STRUCTURED = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN")
ENTITIES = (*STRUCTURED, "SECRET", "PERSON")
LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL")

OPENERS = ["Hi, my name is {PERSON} and I work at {company}.", "Hello support,", "Dear team,",
           "Hi there, this is {PERSON}.", "Good morning,", "Hey,"]
BODIES = [
    "I was charged twice on my card {CREDIT_CARD} for the annual plan.",
    "Please send the refund to my IBAN {IBAN_CODE} instead of the card.",
    "You can reach me on {PHONE_NUMBER} during office hours.",
    "My colleague {PERSON} cannot log in; her address is {EMAIL_ADDRESS}.",
    "Our sync client keeps failing from the office IP {IP_ADDRESS} since the update.",
    "For the tax form, my SSN is {US_SSN}.",
    "The invoice went to {EMAIL_ADDRESS} but it should go to accounting.",
    "I already spoke with {PERSON} from your billing team about this.",
    "Our config still has api_key={SECRET} and I think it leaked, can you rotate it?",
    "The webhook calls come from {IP_ADDRESS} and are rejected with error 403.",
    "Please call {PERSON} at {PHONE_NUMBER} to confirm the change.",
    "The card ending in the number {CREDIT_CARD} expired, please update it.",
    "My manager {PERSON} approved the upgrade to Business.",
    "Two-factor codes never arrive; my number is {PHONE_NUMBER}.",
]
CLOSERS = ["Thanks,\n{PERSON}", "Best regards,\n{PERSON}", "Cheers, {PERSON}", "Kind regards,\n"
           "{PERSON}\n{company}", "Thank you!", "Sincerely,\n{PERSON}"]


def _value(kind: str, fake: Faker, us: Faker, rng: random.Random) -> str:
    if kind == "PERSON":
        local = Faker(rng.choice(LOCALES))
        local.seed_instance(rng.random())
        return local.name() if rng.random() < 0.7 else f"{local.first_name()} {local.last_name()}"
    if kind == "EMAIL_ADDRESS":
        return fake.email()
    if kind == "PHONE_NUMBER":
        return rng.choice([us, fake]).phone_number()
    if kind == "CREDIT_CARD":
        number = us.credit_card_number(card_type=rng.choice(["visa16", "mastercard", "amex"]))
        if rng.random() < 0.5 and len(number) == 16:
            number = " ".join(number[i:i + 4] for i in range(0, 16, 4))
        return number
    if kind == "IBAN_CODE":
        iban = Faker(rng.choice(["de_DE", "fr_FR", "en_GB", "nl_NL", "es_ES"])).iban()
        if rng.random() < 0.5:
            iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        return iban
    if kind == "IP_ADDRESS":
        return us.ipv4_public() if rng.random() < 0.8 else us.ipv6()
    if kind == "US_SSN":
        return us.ssn()
    if kind == "SECRET":
        return us.password(length=rng.randint(14, 24), special_chars=False)
    raise ValueError(kind)


def make_tickets(n: int, seed: int = 0) -> list[tuple[str, list[tuple[str, int, int]]]]:
    """`n` tickets, each with its labelled spans (type, start, end)."""
    rng = random.Random(seed)
    Faker.seed(seed)
    us, fake = Faker("en_US"), Faker(list(LOCALES))
    out = []
    for _ in range(n):
        parts = [rng.choice(OPENERS), *rng.sample(BODIES, rng.randint(1, 3)), rng.choice(CLOSERS)]
        template = "\n\n".join(parts)
        text, spans, cursor = "", [], 0
        while True:
            start = template.find("{", cursor)
            if start < 0:
                text += template[cursor:]
                break
            end = template.index("}", start)
            kind = template[start + 1:end]
            text += template[cursor:start]
            value = us.company() if kind == "company" else _value(kind, fake, us, rng)
            if kind != "company":
                spans.append((kind, len(text), len(text) + len(value)))
            text += value
            cursor = end + 1
        out.append((text, spans))
    return out


def score(tickets, predict) -> tuple[dict[str, dict[str, float]], float]:
    """Per-type precision/recall (overlap match) and records per second of `predict(text)`."""
    tp_gold, n_gold = defaultdict(int), defaultdict(int)
    tp_pred, n_pred = defaultdict(int), defaultdict(int)
    start = time.perf_counter()
    predictions = [predict(text) for text, _ in tickets]
    seconds = time.perf_counter() - start
    for (_, gold), pred in zip(tickets, predictions, strict=True):
        for kind, s, e in gold:
            n_gold[kind] += 1
            tp_gold[kind] += any(k == kind and ps < e and s < pe for k, ps, pe in pred)
        for kind, s, e in pred:
            n_pred[kind] += 1
            tp_pred[kind] += any(k == kind and gs < e and s < ge for k, gs, ge in gold)
    result = {}
    for kind in ENTITIES:
        result[kind] = {"precision": tp_pred[kind] / n_pred[kind] if n_pred[kind] else None,
                        "recall": tp_gold[kind] / n_gold[kind] if n_gold[kind] else None,
                        "support": n_gold[kind]}
    return result, len(tickets) / seconds


def presidio_default() -> tuple[object | None, str]:
    """Presidio's AnalyzerEngine with its default recognizers on a blank English pipeline."""
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import SpacyNlpEngine

        class BlankEnglish(SpacyNlpEngine):
            def load(self) -> None:
                self.nlp = {"en": spacy.blank("en")}

        engine = BlankEnglish(models=[{"lang_code": "en", "model_name": "blank:en"}])
        engine.load()
        return AnalyzerEngine(nlp_engine=engine, supported_languages=["en"]), ""
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="300 records")
    parser.add_argument("--records", type=int, default=1500)
    args = parser.parse_args()
    n = 300 if args.quick else args.records
    console = Console()
    tickets = make_tickets(n)
    from tuneloop.governance.pii import Redactor

    redactor = Redactor(ENTITIES)
    redactor.find("warm up Anna Berg anna@example.com")
    ours, ours_rps = score(tickets, lambda t: [(f.entity, f.start, f.end)
                                              for f in redactor.find(t)])
    analyzer, why_not = presidio_default()
    theirs, theirs_rps = None, None
    if analyzer is not None:
        subset = tickets[: min(len(tickets), 300)]
        wanted = [e for e in ENTITIES if e != "SECRET"]
        theirs, theirs_rps = score(subset, lambda t: [
            (r.entity_type, r.start, r.end)
            for r in analyzer.analyze(t, language="en", entities=wanted, score_threshold=0.4)])

    table = Table(title=f"PII detection on {n} Faker support tickets (overlap match)")
    for col in ("entity", "support", "precision", "recall", "Presidio default P", "Presidio R"):
        table.add_column(col, justify="right" if col != "entity" else "left")

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    for kind in ENTITIES:
        o = ours[kind]
        t = theirs[kind] if theirs else {"precision": None, "recall": None}
        table.add_row(kind, str(o["support"]), fmt(o["precision"]), fmt(o["recall"]),
                      fmt(t["precision"]), fmt(t["recall"]))
    console.print(table)
    console.print(f"tuneloop redactor: {ours_rps:,.0f} records/s")
    if theirs_rps:
        console.print(f"Presidio AnalyzerEngine (default recognizers, blank spaCy, no NER model): "
                      f"{theirs_rps:,.0f} records/s on {min(n, 300)} records; speed ratio "
                      f"{ours_rps / theirs_rps:.1f}x")
    else:
        console.print(f"Presidio's default analyzer could not run here: {why_not}")
    structured_recall = min(ours[k]["recall"] for k in STRUCTURED if ours[k]["recall"] is not None)
    print(json.dumps({
        "bench": "pii", "records": n, "records_per_s": round(ours_rps, 1),
        "goal_records_per_s": 500,
        "min_structured_recall": round(structured_recall, 4), "goal_structured_recall": 0.98,
        "person_recall": round(ours["PERSON"]["recall"], 4), "goal_person_recall": 0.85,
        "person_precision": round(ours["PERSON"]["precision"] or 0, 4),
        "recall": {k: round(v["recall"], 4) for k, v in ours.items() if v["recall"] is not None},
        "precision": {k: round(v["precision"], 4) for k, v in ours.items()
                      if v["precision"] is not None},
        "presidio_records_per_s": round(theirs_rps, 1) if theirs_rps else None,
        "presidio_recall": {k: round(v["recall"], 4) for k, v in theirs.items()
                            if v["recall"] is not None} if theirs else None,
    }))


if __name__ == "__main__":
    main()
