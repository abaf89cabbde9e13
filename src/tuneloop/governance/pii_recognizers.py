"""The recognizers behind `governance.pii.Redactor`, each with Presidio's `analyze` interface.

Presidio's pattern recognizers (e-mail, credit card, IBAN, IP address, US SSN) are used as they
are, run by `_FastPatterns`; phone numbers, secrets and person names have recognizers of our own.
`recognizers(entities)` builds one per entity type, each with a cheap pre-check.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tuneloop.governance import pii_names

# Our own recognizers (secrets, phone numbers, person names) follow Presidio's recognizer
# interface, so they could also be added to a Presidio AnalyzerEngine.


_SECRET_KEYS = (r"pass(?:word|wd|phrase)?|pwd|secret|client[_-]?secret|token|access[_-]?token|"
                r"refresh[_-]?token|auth[_-]?token|api[_-]?key|apikey|access[_-]?key|"
                r"secret[_-]?key|private[_-]?key|credentials?")
_SECRET_PATTERNS = [
    # key=value, key: value, "key": "value": only the value is secret
    re.compile(r"(?i)\b(?:" + _SECRET_KEYS + r")[\"']?\s*(?:=|:|\bis\b)\s*[\"']?"
               r"(?P<value>[^\s\"',;]{4,})"),
    re.compile(r"(?i)\bbearer\s+(?P<value>[A-Za-z0-9._~+/=-]{12,})"),
    re.compile(r"\b(?P<value>(?:AKIA|ASIA)[0-9A-Z]{16})\b"),
    re.compile(r"\b(?P<value>gh[pousr]_[A-Za-z0-9]{30,})\b"),
    re.compile(r"\b(?P<value>xox[abposr]-[A-Za-z0-9-]{10,})\b"),
    re.compile(r"\b(?P<value>(?:sk|pk|rk)[-_](?:live_|test_|proj-)?[A-Za-z0-9_-]{20,})\b"),
    re.compile(r"\b(?P<value>tl_[0-9a-f]{8}_[A-Za-z0-9_-]{20,})"),
    re.compile(r"\b(?P<value>AIza[0-9A-Za-z_-]{35})\b"),
    re.compile(r"\b(?P<value>eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"),
    re.compile(r"(?P<value>-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----)",
               re.S),
]

# Words one of the ten patterns above needs; plain substring tests on the lower-cased text are
# far cheaper than one case-insensitive alternation.
_SECRET_HINTS = ("pass", "pwd", "secret", "token", "key", "auth", "bearer", "credential", "akia",
                 "asia", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "sk-", "sk_", "pk-", "pk_",
                 "rk-", "rk_", "tl_", "aiza", "eyj", "private")
_IPV4_HINT = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d")
_IPV6_HINT = re.compile(r"[0-9a-fA-F]::?[0-9a-fA-F]{0,4}:")


def _maybe_secret(text: str) -> bool:
    lowered = text.lower()
    return any(hint in lowered for hint in _SECRET_HINTS)


def _maybe_ip(text: str) -> bool:
    return bool(_IPV4_HINT.search(text) or (":" in text and _IPV6_HINT.search(text)))


class SecretRecognizer:
    """Credentials: password/token/api_key = value, bearer tokens and well-known key formats."""

    supported_entities = ["SECRET"]
    context: list[str] = []

    def analyze(self, text: str, entities: Sequence[str], nlp_artifacts: Any = None) -> list[Any]:
        """Presidio-style results for every secret value in `text`."""
        return [_result("SECRET", m.start("value"), m.end("value"), 0.9)
                for pattern in _SECRET_PATTERNS for m in pattern.finditer(text)]


_PHONE = re.compile(
    r"(?<![\w+#/.-])(?P<value>(?:(?:\+|00)\d{1,3}[\s.-]?|\(?\+?\(?\d{1,4}\)[\s./-]?)?"
    r"(?:\(0\)\s?)?"
    r"(?:0?\(\d{1,5}\)[\s./-]?)?\d{1,15}(?:(?:[\s.-]|/|\s?-\s?)\d{1,8}){0,6}"
    r"(?:\s?(?:x|ext\.?|extension)\s?\d{1,6})?)(?![\w/-]|\.\d)")
_DATE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")
_GROUPED = re.compile(r"\d[\s./-]\d")
_EXTENSION = re.compile(r"\s?(?:x|ext)")
# Numbering plans whose national numbers are often written as one block without a leading 0
# (North America, Italy, Greece, Spain, France without its 0, Brazil, India, Russia's 8...).
_NO_TRUNK_ZERO = ("US", "IT", "GR", "ES", "FR", "BR", "IN", "RU", "CN")
# Closed plans of eight digits and no trunk prefix, written in one block at home: Denmark
# ("28194821") and Norway share the shape.
_CLOSED_EIGHT = ("DK", "NO")
_YYYYMMDD = re.compile(r"^(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])$")
# A bare block right after one of these words is an identifier, not a phone ("order 48213377").
_ID_BEFORE = re.compile(r"(?i)\b(?:order|invoice|ticket|case|issue|build|version|release|id|ref|"
                        r"sku|serial|tracking|po|booking|reservation)\b[\s#:.-]*"
                        r"(?:no\.?|nr\.?|number|num)?[\s#:.-]*$")
_LAST_SINGLE = re.compile(r"\d[\s./-]\d\s*$")  # "14 3 2025 7": a list of numbers, not a phone


class PhoneNumberRecognizer:
    """Phone numbers in international and national layouts, checked with `phonenumbers`.

    Presidio's PhoneRecognizer runs the `phonenumbers` matcher once per region and accepts only
    numbers valid in a numbering plan; ours finds candidates with one pattern and scores them by
    shape: an international number (`+` or `00`) that `phonenumbers` finds possible, a grouped
    national number ("030 1234 5678", "06-12 34 56 78", "(02) 7776 3170", "(71)/886-4287"), a
    national number written in one block that starts with 0, or a block valid in a plan written
    without a trunk 0 (nine to eleven digits: "3922153973"; eight in Denmark and Norway). Any
    other bare block of digits needs a context word ("Mob.", "tel", "call me") before it, and a
    bare block right after "order", "invoice", "ticket", "build"... is an identifier.
    """

    supported_entities = ["PHONE_NUMBER"]
    context = ["phone", "call", "mobile", "mob", "cell", "tel", "fax", "number", "reach me",
               "whatsapp", "sms", "text me", "ring", "contact", "handy", "telefon", "ph:", "m:",
               "t:"]

    def analyze(self, text: str, entities: Sequence[str], nlp_artifacts: Any = None) -> list[Any]:
        """Presidio-style results for every phone number in `text`."""
        out = []
        for match in _PHONE.finditer(text):
            value = match.group("value")
            score = _phone_score(value)
            start = match.start("value")
            if score and value.isdigit() and _ID_BEFORE.search(text[max(0, start - 30):start]):
                continue
            if score:
                out.append(_result("PHONE_NUMBER", match.start("value"), match.end("value"),
                                   score))
        return out


def _phone_score(value: str) -> float:
    """How much `value` looks like a phone number (0 when it cannot be one).

    `phonenumbers` is asked only where the shape does not decide: it is the slow part.
    """
    import phonenumbers

    core = _EXTENSION.split(value, 1)[0]
    digits = sum(ch.isdigit() for ch in core)
    if not 7 <= digits <= 15 or _DATE.match(value) or _LAST_SINGLE.search(core):
        return 0.0
    grouped = "(" in value or bool(_GROUPED.search(value))
    if value.startswith(("+", "00")):
        if digits >= 8:
            return 0.7
        try:
            number = phonenumbers.parse("+" + value.lstrip("+0"), None)
        except phonenumbers.NumberParseException:
            return 0.0
        return 0.7 if phonenumbers.is_possible_number(number) else 0.0
    if grouped and digits >= 8:
        return 0.6
    if not grouped and core.startswith("0") and 9 <= digits <= 12:
        return 0.45  # a national number in one block ("0612345678")
    if not grouped and 9 <= digits <= 11 and _valid_in(core, _NO_TRUNK_ZERO):
        return 0.45  # plans written without a trunk 0: "6114980364", "3922153973"
    if not grouped and digits == 8 and not _YYYYMMDD.match(core) \
            and _valid_in(core, _CLOSED_EIGHT):
        return 0.45  # "28194821": a Danish or Norwegian number as written at home
    if _valid_in(core, ("US",), possible=True):
        return 0.6 if grouped else 0.3  # "555-0199"; a bare block needs a context word
    return 0.3 if digits >= 8 else 0.0


def _valid_in(number: str, regions: tuple[str, ...], *, possible: bool = False) -> bool:
    import phonenumbers

    check = phonenumbers.is_possible_number if possible else phonenumbers.is_valid_number
    for region in regions:
        try:
            if check(phonenumbers.parse(number, region)):
                return True
        except phonenumbers.NumberParseException:
            continue
    return False


_TITLES = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Mme|Mlle|Herr|Frau|Sr|Sra|MR|MRS|MS|DR)\.?"
_PARTICLES = r"(?:van|von|de|der|den|del|della|da|di|du|le|la|dos|das|bin|ter|ten|zu|mac|st\.)"
# Capital letters of the Latin, Greek and Cyrillic scripts: "Łukasz", "Øyvind", "Çağla" are names.
_UPPER = "A-Z" + "".join(ch for ch in map(chr, range(0xC0, 0x530)) if ch.isupper() and ch.isalpha())
_WORD = rf"[{_UPPER}][^\W\d_]*(?:['’-][^\W\d_]+)*"
# A run of capitalised words, allowing name particles inside ("Ana de la Cruz").
_RUN = re.compile(rf"(?<![\w@.])(?:{_TITLES}\s+)?{_WORD}(?:[ \t]+(?:{_PARTICLES}[ \t]+)*{_WORD})*")
_TITLE_HEAD = re.compile(rf"^{_TITLES}\s+")
# Where a name is announced whatever its case: a mention, a chat speaker label at a line start
# (after an optional time stamp), a `name=` or `"name":` field, a greeting or sign-off word.
# Combining vowel signs and tone marks (Devanagari, Thai, ...) are part of a word, not breaks.
_MARKS = "".join(ch for ch in map(chr, range(0x900, 0x1000))
                 if unicodedata.category(ch) in ("Mn", "Mc"))
_NAME_CHARS = rf"[^\W\d_](?:[^\W\d_'’-]|[{_MARKS}])*"
_MENTION = re.compile(r"(?<![\w.])@(?P<h>[^\W\d_][\w.-]*[^\W_])")
_LABEL = re.compile(
    rf"(?m)^[ \t]*(?:[\[(]\d{{1,2}}:\d{{2}}(?::\d{{2}})?[\])][ \t]*)?"
    rf"(?P<n>{_NAME_CHARS}(?:[ \t]{_NAME_CHARS}){{0,2}})"
    r"(?=:[ \t]|[ \t]+(?:said|says|wrote|writes|asked|replied|mentioned)\b)")
_FIELD = re.compile(
    rf"(?i)\b(?:[a-z]+_)?(?:full_?)?name[\"']?\s*[=:]\s*[\"']?"
    rf"(?P<n>{_NAME_CHARS}(?:[ \t]{_NAME_CHARS}(?![\w'’-]*[=:])){{0,3}})")
_LOWER_CUE = re.compile(
    rf"(?i)\b(?:thx|thanks|thank you|cheers|regards|best|hi|hey|hello|dear|ping|cc|ask|tell|"
    rf"looping in|loop in|talk to|spoke to|spoke with)[ \t]*[,:!]?[ \t]*\n?[ \t]*"
    rf"(?P<n>{_NAME_CHARS}(?:[ \t]{_NAME_CHARS}){{0,2}})")
# The first line of a signature, after the "-- " delimiter line (RFC 3676), is the sender's name.
_SIGNATURE = re.compile(
    rf"(?m)^--[ \t]*\n[ \t]*(?P<n>{_NAME_CHARS}(?:[ \t]{_NAME_CHARS}){{0,2}})[ \t]*$")
# Words that end a cued name ("ping anna about ...") and common words that are also names.
_STOP = frozenset("""
about said says wrote asked replied mentioned who which that is was will would can could should
has had have and or but from to at on in for with by please pls asap again too also here there
the a an all everyone team folks guys today tomorrow now soon later if when while since because
""".split())  # noqa: SIM905
_COMMON_WORDS = frozenset("""
will may mark bill rose page long grant art june april august sky chase hope joy faith grace
summer autumn dawn ray jack max sam ben pat don guy rich rob sue ward wade lane dale glen cliff
rock stone brook river bay hill dean earl king noble major sterling penny ruby amber crystal
all everyone there guys folks team again
""".split())  # noqa: SIM905
# Cues that announce a name just after them, on the same line or the next (a blank line between
# "Hey," and "Two-factor codes..." starts a paragraph, not a name).
_CUE = re.compile(
    r"(?i)(?:\bmy name is|\bname is|\bname:|\bi am|\bi'm|\bthis is|\bdear|\bhi|\bhello|\bhey|"
    r"\bthanks|\bthank you|\bregards|\bcheers|\bbest|\bsincerely|\bwarmly|\byours|"
    r"\bcolleagues?|\bco-?workers?|\bmanager|\bboss|\bcontact|\bcc:?|\bsigned|\bspoke (?:with|to)|"
    r"\btalked to|\bask(?:ed)?|\bfrom|\bby|\bwith|\band|\bfor|\bsaid|\bto|\bper|\bteammate|"
    r"\bclient|\bcustomer|\buser|\bemployee|\bagent|\bassigned to|\breach(?:ed)? out to|"
    r"\bon behalf of|\bforwarded by|\bcopying|\bnamed|\bcalled)[ \t]*[,:\-–]?[ \t]*\n?[ \t]*\Z")
_STRONG_CUE = re.compile(
    r"(?i)(?:(?:^|\n)--|\bmy name is|\bname is|\bname:|\bi am|\bi'm|\bthis is|\bdear|\bhi|"
    r"\bhello|\bhey|"
    r"\bthanks|\bthank you|\bregards|\bcheers|\bsincerely|\bcolleagues?|\bco-?workers?|"
    r"\bmanager|\bcc:?|\bsigned|\bspoke (?:with|to)|\bteammate|\bon behalf of|\bforwarded by|"
    r"\bnamed|\bcalled)[ \t]*[,:\-–]?[ \t]*\n?[ \t]*\Z")
# Capitalised words in support text that are not names even when the lexicon lists them.
_NOT_NAMES = frozenset("""
a an the and or but if of to in on at by for with from as is it its be are was were will would can
could should may might must shall do does did have has had not no yes so too very just also still
here there this that these those my your our their his her we you they he she i me us them
hi hello hey dear thanks thank regards cheers best kind sincerely please sorry ok okay
i'm i've i'll i'd we're we've it's that's there's don't can't won't isn't
january february march april may june july august september october november december
monday tuesday wednesday thursday friday saturday sunday today tomorrow yesterday
team support billing account admin owner customer client user agent manager service services
help desk ticket issue order invoice refund plan plans pro premium basic business enterprise free
mac windows linux android ios chrome safari firefox edge google microsoft apple sync desktop
mobile web app api sso saml oidc scim vpn dns http https url id pdf csv new old north south east
west street road avenue city london paris berlin york san santa los las united states kingdom
error warning note update version release status incident hotfix beta security privacy gdpr
card bank phone email mail address number code key token password folder file files link
""".split())  # noqa: SIM905 (a word list reads better as text)

# Words that make a capitalised run an organisation or a team, not a person ("Long PLC").
_ORG_WORDS = frozenset("""
support team desk inc llc plc ltd gmbh ag kg co corp corporation company group foundation stiftung
bank university institute services solutions systems labs partners holdings associates sa srl bv
""".split())  # noqa: SIM905


@functools.cache
def first_names() -> frozenset[str]:
    """First names: the `gender-guesser` dictionary (about 45,000, many countries) and the first
    names of Faker's locales (`pii_names`: Nordic, Baltic, Slavic, Iberian, Turkish, ...)."""
    raw = importlib.resources.files("gender_guesser").joinpath("data/nam_dict.txt").read_bytes()
    names: set[str] = set()
    for line in raw.decode("iso-8859-1").splitlines():
        if not line or line[0] in "#=":
            continue
        name = line[3:29].strip().replace("+", "-").lower()
        if len(name) > 1:
            names.add(name)
            names.add(_fold(name))
    for name in pii_names.FIRST_NAMES.split():
        names.add(name)
        names.add(_fold(name))
    # A name in a script without an ASCII folding (Greek, Cyrillic) folds to "": never a name.
    return frozenset(names - _NOT_NAMES - {""})


def _fold(word: str) -> str:
    return unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode().lower()


class PersonRecognizer:
    """Person names: a known first name followed by capitalised words, or a name after a cue."""

    supported_entities = ["PERSON"]
    context: list[str] = []

    def __init__(self) -> None:
        self.names = first_names()

    def _is_first_name(self, word: str, *, cued: bool = False) -> bool:
        """A known first name; after a cue, also any word of a script the lexicon does not cover
        (the cue says a name is there; the lexicon cannot confirm it)."""
        low = word.lower()
        if cued and _unlisted_script(word):
            return True
        return low not in _NOT_NAMES and (low in self.names or _fold(word) in self.names)

    def analyze(self, text: str, entities: Sequence[str], nlp_artifacts: Any = None) -> list[Any]:
        """Presidio-style results for every person name found in `text`."""
        out = []
        for match in _RUN.finditer(text):
            start, run = match.start(), match.group()
            head = _TITLE_HEAD.match(run)
            titled = head is not None
            if head:
                start += head.end()
                run = run[head.end():]
            words = run.split()
            if any(w.lower().strip(".,&") in _ORG_WORDS for w in words):
                continue
            # Trim trailing words that are clearly not part of a name ("Anna Berg Billing").
            while words and words[-1].lower() in _NOT_NAMES:
                words.pop()
            while words and words[0].lower() in _NOT_NAMES:
                start = text.index(words[1], start) if len(words) > 1 else start
                words.pop(0)
            if not words:
                continue
            words = words[:4]
            before = text[max(0, start - 30):start]
            if len(words) == 1 and words[0].isupper() and not titled \
                    and not _STRONG_CUE.search(before):
                continue  # an acronym ("SLA", "IBAN"), not a name written in capitals
            known = self._is_first_name(words[0])
            if known and len(words) >= 2:
                score = 0.85
            elif known and (_CUE.search(before) or titled or _sign_off(text, start, words)):
                score = 0.8
            elif known and not _sentence_start(text, start):
                score = 0.6
            elif titled or (_STRONG_CUE.search(before) and len(words) <= 3):
                score = 0.7
            else:
                continue
            end = text.index(words[-1], start) + len(words[-1])
            out.append(_result("PERSON", start, end, score))
        return out + self._cued(text)

    def _cued(self, text: str) -> list[Any]:
        """Names in any case where the text says a name is there: @mentions, speaker labels
        ("anna: ..."), `name=` fields, after greetings and sign-offs ("thx, anna")."""
        out = []
        if "@" in text:
            for m in _MENTION.finditer(text):
                if self._is_first_name(re.split(r"[._-]", m.group("h"))[0], cued=True):
                    out.append(_result("PERSON", m.start("h"), m.end("h"), 0.8))
        for pattern, single_ok in ((_LABEL, True), (_FIELD, True), (_SIGNATURE, True),
                                   (_LOWER_CUE, False)):
            for m in pattern.finditer(text):
                words = m.group("n").split()
                while words and words[-1].lower() in _STOP:
                    words.pop()
                if not words or not self._is_first_name(words[0], cued=True):
                    continue
                if len(words) == 1 and not single_ok and words[0].lower() in _COMMON_WORDS:
                    continue
                start = m.start("n")
                end = start + len(" ".join(words)) if m.group("n").startswith(
                    " ".join(words)) else text.index(words[-1], start) + len(words[-1])
                out.append(_result("PERSON", start, end, 0.75))
        return out


_CAPITAL = re.compile(f"[{_UPPER}]")
_CUE_HINT = re.compile(r"(?i)[@:=]|^--|\n--|\b(?:thx|thanks|thank|ping|hi|hey|hello|dear|cc|"
                       r"regards|cheers|best|ask|tell|loop|talk|spoke)\b")


def _maybe_person(text: str) -> bool:
    """A capital letter, or a cue that may announce a name written in lower case."""
    return bool(_CAPITAL.search(text) or _CUE_HINT.search(text))


def _unlisted_script(word: str) -> bool:
    """Letters, all beyond the Latin, Greek and Cyrillic scripts the lexicon covers (Armenian,
    Georgian, Hebrew, Arabic, Chinese, Japanese, Korean...)."""
    letters = [ch for ch in word if ch.isalpha()]
    return bool(letters) and all(ord(ch) >= 0x530 for ch in letters)


def _sentence_start(text: str, start: int) -> bool:
    prefix = text[:start].rstrip()
    return not prefix or prefix[-1] in ".!?:\n\"'("


def _sign_off(text: str, start: int, words: list[str]) -> bool:
    # A name alone on the last line of a message ("...\nAnna").
    end = text.find("\n", start)
    rest = text[start:] if end < 0 else text[start:end]
    return rest.strip().rstrip(".!") == " ".join(words) and (start == 0 or text[start - 1] == "\n")


def _result(entity: str, start: int, end: int, score: float) -> Any:
    from presidio_analyzer import RecognizerResult  # loaded by _presidio() first

    return RecognizerResult(entity_type=entity, start=start, end=end, score=score)


# ------------------------------------------------------------------------------------------


@functools.cache
def _presidio() -> Any:
    """Import presidio_analyzer without the torch/transformers integrations it does not need here.

    Its package imports its Hugging Face NLP engine, and through it torch and transformers, which
    costs 10-30 s; only its pattern recognizers are used, so those two imports are made to fail
    (Presidio and thinc treat that as "not installed") unless the process already has them.
    Called once, at the first Redactor, normally before any thread could import torch itself.
    """
    import sys

    blocked = [name for name in ("torch", "transformers") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import presidio_analyzer
    finally:
        for name in blocked:
            if sys.modules.get(name) is None:
                del sys.modules[name]
    return presidio_analyzer


@functools.cache
def _offline_tld_extractor() -> Any:
    import tldextract

    # No suffix-list download: the snapshot shipped with tldextract is enough to validate domains.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


Check = Callable[[str], Any]


def recognizers(entities: Iterable[str]) -> list[tuple[Any, Check]]:
    """One recognizer per wanted entity, each with a cheap pre-check that skips hopeless texts."""
    _presidio()
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import (
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        UsSsnRecognizer,
    )

    class OfflineEmailRecognizer(EmailRecognizer):
        # Presidio's pattern backtracks heavily (milliseconds per text); this one is linear and
        # finds the same addresses, which tldextract then validates as Presidio does.
        PATTERNS = [Pattern("Email", r"(?<![\w.+-])[\w.!#$%&'*+/=?^`{|}~-]*\w@\w+(?:-+\w+)*"
                                     r"(?:\.\w+(?:-+\w+)*)+\b", 0.5)]

        def validate_result(self, pattern_text: str) -> bool:
            return _offline_tld_extractor()(pattern_text).fqdn != ""

    factories: dict[str, tuple[Any, str | Check]] = {
        "EMAIL_ADDRESS": (lambda: _FastPatterns(OfflineEmailRecognizer()),
                          lambda text: "@" in text),
        "PHONE_NUMBER": (PhoneNumberRecognizer, r"\d(?:[\s().+/-]{0,3}\d){6}"),
        "CREDIT_CARD": (_card_recognizer, r"\d(?:[\s-]?\d){11}"),
        "IBAN_CODE": (IbanRecognizer, r"[A-Z]{2}\d\d"),
        "IP_ADDRESS": (lambda: _FastPatterns(IpRecognizer()), _maybe_ip),
        "US_SSN": (lambda: _FastPatterns(UsSsnRecognizer()), r"\d{3}[\s.-]?\d{2}[\s.-]?\d{4}"),
        "SECRET": (SecretRecognizer, _maybe_secret),
        "PERSON": (PersonRecognizer, _maybe_person),
    }
    out = []
    for entity in entities:
        if entity not in factories:
            raise ValueError(f"cannot redact {entity!r}; supported: {', '.join(factories)}")
        factory, check = factories[entity]
        out.append((factory(), re.compile(check).search if isinstance(check, str) else check))
    return out


class _FastPatterns:
    """A Presidio PatternRecognizer run with the standard `re` module and its own validators.

    Presidio's matching loop (the `regex` module with a timeout, an explanation object per
    match) costs more than the matching itself; this applies the same patterns, scores,
    `validate_result` and `invalidate_result` in a plain loop. Falls back to Presidio's own
    `analyze` when a pattern is not valid for `re`.
    """

    def __init__(self, recognizer: Any) -> None:
        self.recognizer = recognizer
        self.supported_entities = recognizer.supported_entities
        self.context = recognizer.context or []
        try:
            self.patterns = [(re.compile(pat.regex, recognizer.global_regex_flags), pat.score)
                             for pat in recognizer.patterns]
        except re.error:
            self.patterns = []

    def analyze(self, text: str, entities: Sequence[str], nlp_artifacts: Any = None) -> list[Any]:
        """Presidio-style results, as the wrapped recognizer would give them."""
        if not self.patterns:
            return self.recognizer.analyze(text, entities, nlp_artifacts)
        entity = self.supported_entities[0]
        out = []
        for pattern, base in self.patterns:
            for match in pattern.finditer(text):
                value = match.group()
                if not value:
                    continue
                valid = self.recognizer.validate_result(value)
                if valid is False or self.recognizer.invalidate_result(value):
                    continue
                out.append(_result(entity, match.start(), match.end(), 1.0 if valid else base))
        return out


def _card_recognizer() -> Any:
    _presidio()
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer

    # Presidio's pattern predates Mastercard's 2221-2720 range; add it (Luhn still decides).
    two_series = Pattern("Mastercard 2-series", r"\b2[2-7]\d{2}[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b",
                         0.3)
    return _FastPatterns(CreditCardRecognizer(patterns=[*CreditCardRecognizer.PATTERNS,
                                                        two_series]))


