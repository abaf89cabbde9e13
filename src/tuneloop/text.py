"""Text normalisation shared by the quality metrics and by data synthesis, so a synthetic
record's key facts are found exactly as the `key_facts` metric will look for them."""

from __future__ import annotations

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})

# Function words carry no claim: an answer is not "grounded" because it says "the" and "is".
_STOPWORD_TEXT = """
a an and are as at be been but by can could do does for from has have how i if in into is it its
may me might my no not of on or our should so than that the their them then there these they this
to was we were what when where which who will with would you your yes also just more most only
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def normalize(text: str) -> str:
    """Lower case, punctuation and articles removed, whitespace collapsed."""
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def tokens(text: str) -> list[str]:
    """The normalised words of `text`."""
    return normalize(text).split()
