"""Generate `data/tickets.jsonl`, the synthetic customer tickets of the support-desk example.

Run from anywhere in a checkout of the repository (the generator is not installed with the
package; `examples/support-desk/data` and `kb` lead to the bundled example inside
`src/tuneloop/examples/`). Faker is the only dependency; the output is deterministic for a given
Faker version:

    python -m venv /tmp/exvenv && /tmp/exvenv/bin/pip install faker
    /tmp/exvenv/bin/python examples/support-desk/scripts/make_tickets.py

What it writes, in this order of construction:

1. original tickets, `round(topic.n * SCALE)` per topic (at least 3) from `topics.py`: a customer
   message assembled from a greeting, a tone, one of the topic's phrasings, optional personal data
   (phone numbers, e-mail addresses, IBANs, test credit-card numbers, IP addresses, API tokens,
   passwords in logs, rarely a US SSN, colleagues' names), a closing and a signature; and the
   agent's reply in one fixed template whose facts come from the topic's knowledge-base documents;
2. near-duplicates (~8%): the same customer resending an original with a small edit;
3. exact duplicates (~2%): an original line repeated verbatim later in the file;
4. malformed records (~1.5%) placed near the end, for the validator to reject.

The script checks its own output: every key fact occurs literally in the reply and in one of the
`kb_refs` documents, and every reply is 40-90 words. It prints a data card (counts per category,
PII kinds, line numbers of the defects) that README.md reproduces.
"""

from __future__ import annotations

import collections
import json
import random
import re
import string
import sys
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

from faker import Faker

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from topics import TOPICS, Topic  # noqa: E402

ROOT = HERE.parent
KB_DIR = ROOT / "kb"
OUT = ROOT / "data" / "tickets.jsonl"

SEED = 20260314
SCALE = 0.68
NEAR_DUP_SHARE = 0.08
EXACT_DUP_SHARE = 0.02
START = datetime(2025, 12, 1, tzinfo=UTC)
END = datetime(2026, 3, 20, tzinfo=UTC)
LOCALES = [
    ("en_US", 0.40),
    ("en_GB", 0.20),
    ("de_DE", 0.15),
    ("fr_FR", 0.10),
    ("nl_NL", 0.10),
    ("es_ES", 0.05),
]
CHANNELS = [("email", 0.55), ("web", 0.27), ("chat", 0.18)]
# Valid Luhn test numbers published by card networks for testing; never real accounts.
TEST_CARDS = [
    "4111 1111 1111 1111",
    "5555 5555 5555 4444",
    "4012 8888 8888 1881",
    "3782 822463 10005",
    "6011 1111 1111 1117",
    "5105 1051 0510 5100",
    "4242-4242-4242-4242",
]

REPLY_TEMPLATE = (
    "Hi {first},\n\nThanks for reaching out about {subject}. {body}\n\n"
    "Best regards,\nQuillstack Support"
)
GENERIC_NEXT = [
    "Let us know if anything is still unclear.",
    "If the problem persists, reply with a screenshot and we will take a closer look.",
    "Feel free to reply if you need anything else.",
    "Just reply to this message if you have further questions.",
]

GREETINGS = [
    "Hi,",
    "Hello,",
    "Hi Quillstack team,",
    "Dear Support,",
    "Hello support,",
    "Hey,",
    "Good morning,",
    "Hi there,",
    "Dear Sir or Madam,",
]
POLITE = [
    "Hope you're doing well.",
    "Sorry to bother you with this.",
    "Quick question.",
    "I hope you can help me.",
    "Thanks for a great product, but I have a problem.",
]
ANGRY = [
    "This is the second time I'm writing about this.",
    "Honestly, this is getting ridiculous.",
    "We pay for this service and it is not acceptable.",
    "I'm really frustrated right now.",
    "Nobody has answered my last message.",
    "This is urgent, our whole team is blocked.",
]
CLOSINGS = [
    "Thanks in advance.",
    "Any help appreciated.",
    "Please advise.",
    "Please get back to me ASAP.",
    "Thank you very much.",
    "Looking forward to your answer.",
    "Thanks for your help.",
]
SIGNOFFS = [
    "Best regards,",
    "Kind regards,",
    "Best,",
    "Regards,",
    "Thanks,",
    "Cheers,",
    "Many thanks,",
]
JOBS = [
    "IT Manager",
    "Office Manager",
    "Head of Operations",
    "Systems Administrator",
    "Finance Lead",
    "Project Manager",
    "CTO",
    "Managing Director",
    "Designer",
    "Team Assistant",
    "DevOps Engineer",
    "Legal Counsel",
]
GENERAL_CONTEXT = [
    "We are on the Business plan.",
    "We have about {num} users.",
    "I'm the admin of our workspace.",
    "We just moved to Quillstack last month.",
    "We're on the Starter plan at the moment.",
]
CLIENT_CONTEXT = [
    "I'm on Windows 11.",
    "I'm on a MacBook Pro with macOS 14.",
    "The client version is 4.6.2.",
    "It worked fine until last week.",
    "I already restarted my computer.",
    "{colleague} has the same problem.",
    "This affects our whole design team.",
    "Client version 4.5.0 if that matters.",
]
CLIENT_CATEGORIES = {"sync", "install", "performance"}
# Support desks see far more sync questions than anything else; scale the per-topic counts.
CATEGORY_WEIGHT = {"sync": 1.35, "performance": 1.1, "sharing": 0.9, "data-privacy": 0.85}


def main() -> None:
    rng = random.Random(SEED)
    fakers = {}
    for i, (loc, _) in enumerate(LOCALES):
        fk = Faker(loc)
        fk.seed_instance(SEED + i)
        fakers[loc] = fk
    us = fakers["en_US"]
    kb = load_kb()
    check_topics(kb)

    originals: list[dict] = []
    for topic in TOPICS:
        weight = CATEGORY_WEIGHT.get(topic.category, 1.0)
        for _ in range(max(3, round(topic.n * SCALE * weight))):
            originals.append(make_ticket(topic, rng, fakers, us))
    rng.shuffle(originals)

    # near-duplicates: resend of a longer ticket with a small edit
    n_near = round(len(originals) * NEAR_DUP_SHARE / (1 - NEAR_DUP_SHARE - EXACT_DUP_SHARE))
    candidates = [t for t in originals if len(t["messages"][0]["content"].split()) >= 25]
    near = [near_duplicate(t, rng) for t in rng.sample(candidates, n_near)]

    records = originals + near
    records.sort(key=lambda r: r["created_at"])
    for i, rec in enumerate(records):
        rec["id"] = f"T-{10001 + i}"
    for rec in near:
        rec["_near_of"] = rec.pop("_source")["id"]

    lines = [(rec, json.dumps(strip_private(rec), ensure_ascii=False)) for rec in records]
    # exact duplicates: the same line exported twice, a few lines after the original
    n_exact = max(1, round((len(lines) + n_near) * EXACT_DUP_SHARE))
    exact_src = sorted(rng.sample(range(len(lines) - 40), n_exact), reverse=True)
    for idx in exact_src:
        rec, text = lines[idx]
        lines.insert(idx + rng.randint(2, 12), ({**rec, "_exact_of": rec["id"]}, text))

    malformed = make_malformed(us, rng, 10001 + len(records))
    positions = [len(lines) - k for k in (17, 13, 10, 7, 5, 3, 1)]
    for pos, bad in zip(positions, malformed, strict=True):
        lines.insert(pos, bad)

    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8") as fh:
        for _, text in lines:
            fh.write(text + "\n")
    verify_and_report(lines, kb)


# --------------------------------------------------------------------------------------------
# one ticket


def make_ticket(topic: Topic, rng: random.Random, fakers: dict, us: Faker) -> dict:
    loc = weighted(rng, LOCALES)
    fk = fakers[loc]
    first, last = fk.first_name(), fk.last_name()
    name = f"{first} {last}"
    company = fk.company()
    domain = company_domain(company, rng, loc)
    email = (
        f"{ascii_slug(first)}.{ascii_slug(last)}@{domain}"
        if rng.random() < 0.7
        else (f"{ascii_slug(first)[0]}{ascii_slug(last)}@{domain}")
    )
    if rng.random() < 0.12:
        free_mail = rng.choice(["gmail.com", "outlook.com", "proton.me", "web.de"])
        email = f"{ascii_slug(first)}{rng.randint(1, 99)}@{free_mail}"
    has_email = rng.random() > 0.04
    channel = weighted(rng, CHANNELS)
    colleague = fk.name()
    pii: set[str] = set()

    values = {
        "colleague": colleague,
        "device": device_name(rng, first),
        "company": company,
        "num": rng.choice([3, 5, 8, 12, 25, 40, 60, 150]),
        "invoice": f"INV-{rng.choice([2025, 2026])}-{rng.randint(1000, 9999):05d}",
    }
    ask = rng.choice(topic.asks).format(**values)
    if "{colleague}" in " ".join(topic.asks) and colleague in ask:
        pii.add("PERSON")
    tone = rng.random()
    parts: list[str] = []
    if channel != "chat" and rng.random() < 0.8:
        parts.append(rng.choice(GREETINGS))
    body: list[str] = []
    if tone < 0.18:
        body.append(rng.choice(ANGRY))
    elif tone < 0.40:
        body.append(rng.choice(POLITE))
    body.append(ask)
    if tone < 0.18 and rng.random() < 0.5:
        body[-1] = body[-1].rstrip(".?") + "!!"
    if rng.random() < 0.4:
        pool = GENERAL_CONTEXT + (CLIENT_CONTEXT if topic.category in CLIENT_CATEGORIES else [])
        extra = rng.choice(pool).format(**values)
        body.append(extra)
        if colleague in extra:
            pii.add("PERSON")
    text = " ".join(body)
    if rng.random() < 0.15:
        text = add_typos(text, rng)
    if channel == "chat" and rng.random() < 0.4:
        text = text[0].lower() + text[1:]
    sensitive = pii_sentences(topic, rng, fk, us, pii, email, name)
    if rng.random() < 0.08:
        sensitive.append(f"cc {fk.name()}")
        pii.add("PERSON")
    body_text = " ".join([text, *sensitive])
    body_index = len(parts)
    parts.append(body_text)
    closing = ""
    if (channel != "chat" or rng.random() < 0.2) and rng.random() < 0.5:
        closing = rng.choice(CLOSINGS)
        parts.append(closing)
    sig = signature(rng, fk, first, name, company, email, channel, pii, closing)
    if sig:
        parts.append(sig)
    sep = "\n\n" if channel != "chat" else "\n"
    content = sep.join(parts)

    reply = make_reply(topic, rng, first)
    created = random_time(rng, topic.after)
    return {
        "id": "",
        "created_at": created,
        "channel": channel,
        "category": topic.category,
        "customer": {"name": name, "email": email if has_email else None, "company": company},
        "messages": [{"role": "user", "content": content}, {"role": "assistant", "content": reply}],
        "kb_refs": list(topic.kb),
        "key_facts": list(topic.key_facts),
        "_topic": topic.key,
        "_pii": sorted(pii),
        "_locale": loc,
        "_parts": parts,
        "_body_index": body_index,
        "_sep": sep,
    }


def make_reply(topic: Topic, rng: random.Random, first: str) -> str:
    facts = rng.choice(topic.facts)
    options = list(topic.nxt) + GENERIC_NEXT
    nxt = rng.choice(options) if rng.random() < 0.75 else ""
    body = f"{facts} {nxt}".strip()
    reply = REPLY_TEMPLATE.format(first=first, subject=topic.subject, body=body)
    spare = [o for o in options if o != nxt]
    rng.shuffle(spare)
    while len(reply.split()) < 40:
        body = f"{body} {spare.pop()}"
        reply = REPLY_TEMPLATE.format(first=first, subject=topic.subject, body=body)
    return reply


def pii_sentences(
    topic: Topic, rng: random.Random, fk: Faker, us: Faker, pii: set[str], email: str, name: str
) -> list[str]:
    out: list[str] = []
    if rng.random() < 0.18:
        out.append(
            rng.choice([f"My login is {email}.", f"The account is {email}.", f"(account: {email})"])
        )
        pii.add("EMAIL_ADDRESS")
    if "iban" in topic.pii and rng.random() < 0.75:
        iban = fk.iban() if hasattr(fk, "iban") else us.iban()
        out.append(
            rng.choice(
                [
                    f"Please send the money to IBAN {spaced_iban(iban)}, account holder {name}.",
                    f"Our bank details: {name}, IBAN {iban}.",
                    f"Refund to {spaced_iban(iban)} please.",
                ]
            )
        )
        pii.update({"IBAN_CODE", "PERSON"})
    if (
        "IBAN_CODE" not in pii
        and topic.category == "billing"
        and rng.random() < (0.35 if "card" in topic.pii else 0.08)
    ):
        card = rng.choice(TEST_CARDS)
        out.append(
            rng.choice(
                [
                    f"The card on file is {card}, exp {rng.randint(1, 12):02d}/"
                    f"{rng.randint(26, 30)}.",
                    f"You can charge my card {card} if that's easier.",
                    f"I tried the card {card} but it was declined.",
                ]
            )
        )
        pii.add("CREDIT_CARD")
    if topic.category == "billing" and len(out) < 2 and rng.random() < 0.3:
        out.append(
            f"Invoice number is INV-{rng.choice([2025, 2026])}-{rng.randint(1000, 9999):05d}."
        )
    if "ip" in topic.pii and rng.random() < 0.55:
        ip = us.ipv4_public()
        out.append(
            rng.choice(
                [
                    f"Our public IP is {ip}.",
                    f"The client log says: connect to sync.quillstack.com from {ip} failed.",
                    f"We are behind the firewall at {ip}, internal range {us.ipv4_private()}.",
                    f"Affected machine: {ip}.",
                ]
            )
        )
        pii.add("IP_ADDRESS")
    if "apikey" in topic.pii and rng.random() < (0.9 if topic.key == "api-leaked-token" else 0.4):
        token = "qs_pat_" + "".join(
            rng.choice(string.ascii_letters + string.digits) for _ in range(32)
        )
        out.append(
            rng.choice(
                [
                    f'Request: curl -H "Authorization: Bearer {token}" https://api.quillstack.com/v2/files/root',
                    f"Token used: {token}",
                    f"Here is our config: QS_TOKEN={token}",
                ]
            )
        )
        pii.add("SECRET")
    if "password" in topic.pii and rng.random() < 0.45:
        user = ascii_slug(name.split()[0])
        pw = rng.choice(
            ["Sommer2025!", "Winter#2026", "Qwerty!234", "Proxy$ecret9", "Hunter2hunter2"]
        )
        out.append(
            f"Log: proxy=http://{us.ipv4_private()}:8080 user={user} password={pw} status=407"
        )
        pii.update({"SECRET", "IP_ADDRESS"})
    if ("ssn" in topic.pii and rng.random() < 0.5) or rng.random() < 0.005:
        out.append(f"For verification, my SSN is {us.ssn()}.")
        pii.add("US_SSN")
    if len(out) < 2 and rng.random() < 0.07:
        out.append(f"You can call me on {fk.phone_number()}.")
        pii.add("PHONE_NUMBER")
    return out


def signature(
    rng: random.Random,
    fk: Faker,
    first: str,
    name: str,
    company: str,
    email: str,
    channel: str,
    pii: set[str],
    closing: str,
) -> str:
    if channel == "chat":
        if rng.random() < 0.3:
            pii.add("PERSON")
            return f"- {first}"
        return ""
    r = rng.random()
    if r < 0.10:
        return ""
    pii.add("PERSON")
    signoffs = [x for x in SIGNOFFS if "hank" not in x] if "hank" in closing else SIGNOFFS
    signoff = rng.choice(signoffs)
    if r < 0.50:
        return f"{signoff}\n{first}"
    if r < 0.85:
        return f"{signoff}\n{name}"
    phone = fk.phone_number()
    pii.add("PHONE_NUMBER")
    lines = [signoff, name, f"{rng.choice(JOBS)} | {company}", f"Tel. {phone}"]
    if rng.random() < 0.5:
        lines.append(email)
        pii.add("EMAIL_ADDRESS")
    if rng.random() < 0.15:
        lines.append("Sent from my iPhone")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# duplicates and defects


NEAR_EDITS = [
    lambda t, r: "Resending since I haven't heard back. " + t,
    lambda t, r: "Any update on this? " + t,
    lambda t, r: t + " Still happening today.",
    lambda t, r: t + " Please help.",
    lambda t, r: t + " Thanks again.",
    lambda t, r: add_typos(t, r),
    lambda t, r: "FW: " + t,
]


def near_duplicate(src: dict, rng: random.Random) -> dict:
    rec = json.loads(json.dumps(src))
    parts = rec["_parts"]
    i = rec["_body_index"]
    text = parts[i]
    new = rng.choice(NEAR_EDITS)(text, rng)
    if new == text:
        new = text + " Thanks."
    parts[i] = new
    rec["messages"][0]["content"] = rec["_sep"].join(parts)
    t = datetime.fromisoformat(rec["created_at"].replace("Z", "+00:00"))
    later = t + timedelta(hours=rng.randint(2, 60), minutes=rng.randint(0, 59))
    rec["created_at"] = iso(min(later, END + timedelta(days=2)))
    if rng.random() < 0.3:
        rec["channel"] = "email" if rec["channel"] != "email" else "web"
    rec["_source"] = src
    return rec


def make_malformed(us: Faker, rng: random.Random, next_id: int) -> list[tuple[dict, str]]:
    def person() -> dict:
        first, last = us.first_name(), us.last_name()
        return {
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}@example.org",
            "company": us.company(),
        }

    def base(i: int, text: str) -> dict:
        return {
            "id": f"T-{next_id + i}",
            "created_at": f"2026-03-20T16:0{i}:00Z",
            "channel": "email",
            "category": "sync",
            "customer": person(),
        }

    out = []
    r = base(0, "")
    r["messages"] = [
        {"role": "user", "content": "Selective sync is not visible in my client."},
        {"role": "assistant", "content": ""},
    ]
    out.append(({**r, "_defect": "empty assistant reply"}, json.dumps(r)))
    r = base(1, "")
    r["kb_refs"] = ["selective-sync"]
    out.append(({**r, "_defect": "no messages field"}, json.dumps(r)))
    r = base(2, "")
    r["messages"] = [
        {"role": "user", "content": "Invoice question"},
        {"role": "assistant", "content": "Hi, thanks for"},
    ]
    broken = json.dumps(r)[:-38]
    out.append(({**r, "_defect": "broken JSON (line cut off)"}, broken))
    r = base(3, "")
    r["messages"] = []
    out.append(({**r, "_defect": "empty messages list"}, json.dumps(r)))
    r = base(4, "")
    r["messages"] = [
        {"role": "user", "content": "Why is sync so slow?? Nothing moves since Monday."}
    ]
    out.append(({**r, "_defect": "no assistant message"}, json.dumps(r)))
    r = base(5, "")
    r["messages"] = [
        {"role": "customer", "content": "How do I reset my password?"},
        {"role": "agent", "content": "Use the reset page."},
    ]
    out.append(({**r, "_defect": "unknown roles (customer/agent)"}, json.dumps(r)))
    r = base(6, "")
    r["messages"] = "user: my files are gone\nassistant: check the Trash"
    out.append(({**r, "_defect": "messages is a string, not a list"}, json.dumps(r)))
    return out


# --------------------------------------------------------------------------------------------
# helpers


def weighted(rng: random.Random, pairs: list[tuple[str, float]]) -> str:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def ascii_slug(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]", "", text.lower()) or "user"


TLDS = {
    "en_US": [".com", ".com", ".io", ".net"],
    "en_GB": [".co.uk", ".com"],
    "de_DE": [".de"],
    "fr_FR": [".fr", ".com"],
    "nl_NL": [".nl"],
    "es_ES": [".es", ".com"],
}


def company_domain(company: str, rng: random.Random, locale: str) -> str:
    words = [
        w
        for w in re.split(r"[\s,.&-]+", company)
        if w
        and w.lower()
        not in {
            "and",
            "und",
            "gmbh",
            "ltd",
            "llc",
            "inc",
            "plc",
            "sa",
            "bv",
            "sarl",
            "sl",
            "ag",
            "kg",
            "group",
            "co",
            "et",
            "fils",
            "van",
            "de",
            "der",
            "s",
        }
    ]
    stem = ascii_slug("".join(words[:2])) or "company"
    return stem[:24] + rng.choice(TLDS[locale])


def device_name(rng: random.Random, first: str) -> str:
    return rng.choice(["LAPTOP", "DESKTOP", "MBP", "WS"]) + "-" + ascii_slug(first).upper()[:8]


def spaced_iban(iban: str) -> str:
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


def iban_valid(iban: str) -> bool:
    s = iban.replace(" ", "")
    s = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in s)) % 97 == 1


def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()][::-1]
    total = sum(
        d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits)
    )
    return total % 10 == 0


def add_typos(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if w.isalpha() and len(w) > 4]
    for i in rng.sample(candidates, min(len(candidates), rng.randint(1, 2))):
        w = words[i]
        j = rng.randint(1, len(w) - 3)
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    out = " ".join(words)
    if rng.random() < 0.3:
        out = out.replace("I'm", "im").replace("don't", "dont").replace("can't", "cant")
    return out


def random_time(rng: random.Random, after: str | None) -> str:
    start = START
    if after:
        start = max(start, datetime.fromisoformat(after).replace(tzinfo=UTC))
    span = (END - start).days
    day = start + timedelta(days=rng.randint(0, span))
    if day.weekday() >= 5 and rng.random() < 0.7:
        day += timedelta(days=7 - day.weekday())
    t = day.replace(
        hour=rng.choice([6, 7, 8, 8, 9, 9, 10, 10, 11, 13, 14, 14, 15, 16, 17, 19, 22]),
        minute=rng.randint(0, 59),
        second=0,
    )
    return iso(t)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def strip_private(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def load_kb() -> dict[str, str]:
    docs = {}
    for path in sorted(KB_DIR.iterdir()):
        if path.suffix in {".md", ".txt", ".html"}:
            docs[path.stem] = path.read_text(encoding="utf-8")
    return docs


def check_topics(kb: dict[str, str]) -> None:
    problems = []
    for topic in TOPICS:
        if len(topic.asks) < 6:
            problems.append(f"{topic.key}: fewer than 6 phrasings")
        if len(topic.facts) < 2:
            problems.append(f"{topic.key}: fewer than 2 reply phrasings")
        missing = [d for d in topic.kb if d not in kb]
        if missing:
            problems.append(f"{topic.key}: unknown kb docs {missing}")
            continue
        text = "\n".join(kb[d] for d in topic.kb)
        for fact in topic.key_facts:
            if fact not in text:
                problems.append(f"{topic.key}: key fact {fact!r} not in {topic.kb}")
            for variant in topic.facts:
                if fact not in variant:
                    problems.append(f"{topic.key}: key fact {fact!r} missing from {variant!r}")
    if problems:
        raise SystemExit("topic problems:\n  " + "\n  ".join(problems))


def verify_and_report(lines: list[tuple[dict, str]], kb: dict[str, str]) -> None:
    cats: collections.Counter = collections.Counter()
    docs: collections.Counter = collections.Counter()
    pii: collections.Counter = collections.Counter()
    words = []
    defects, exact, near = [], [], []
    for no, (rec, text) in enumerate(lines, start=1):
        if "_defect" in rec:
            defects.append((no, rec["id"], rec["_defect"]))
            continue
        if "_exact_of" in rec:
            exact.append((no, rec["_exact_of"]))
            continue
        if "_near_of" in rec:
            near.append((no, rec["id"], rec["_near_of"]))
        data = json.loads(text)
        reply = data["messages"][1]["content"]
        n = len(reply.split())
        assert 40 <= n <= 90, (data["id"], n, reply)
        words.append(n)
        kbtext = "\n".join(kb[d] for d in data["kb_refs"])
        for fact in data["key_facts"]:
            assert fact in reply and fact in kbtext, (data["id"], fact)
        cats[data["category"]] += 1
        for d in data["kb_refs"]:
            docs[d] += 1
        for kind in rec["_pii"]:
            pii[kind] += 1
        for card in re.findall(r"\b(?:\d[ -]?){13,16}\b", data["messages"][0]["content"]):
            if card.replace(" ", "").replace("-", "") in {
                c.replace(" ", "").replace("-", "") for c in TEST_CARDS
            }:
                assert luhn_valid(card), card
        for iban in re.findall(
            r"IBAN ([A-Z]{2}\d{2}[A-Z0-9 ]{10,40}?)(?:,|\.|$)", data["messages"][0]["content"]
        ):
            assert iban_valid(iban), iban
    valid = sum(cats.values())
    print(
        f"lines: {len(lines)}; valid unique-id records: {valid} "
        f"(of which near-duplicates: {len(near)}); exact duplicate lines: {len(exact)}; "
        f"malformed: {len(defects)}"
    )
    print("per category:", ", ".join(f"{k} {v}" for k, v in cats.most_common()))
    print("min tickets per kb doc:", min(docs.values()), "docs covered:", len(docs), "of", len(kb))
    print(
        "reply words: min", min(words), "max", max(words), "mean", round(sum(words) / len(words), 1)
    )
    print("records with PII kind:", ", ".join(f"{k} {v}" for k, v in pii.most_common()))
    with_email_meta = sum(
        1
        for rec, _ in lines
        if "_pii" in rec and "_exact_of" not in rec and rec["customer"]["email"]
    )
    print("records with customer.email:", with_email_meta)
    print("exact duplicate lines (line, id):", exact)
    print("near-duplicates (line, id, of):", near)
    print("malformed (line, id, defect):")
    for d in defects:
        print("  ", d)


if __name__ == "__main__":
    main()
