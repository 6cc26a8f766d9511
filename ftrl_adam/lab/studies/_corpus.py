"""A character corpus that ships with Python itself, and its unigram entropy (private).

The text is ``pydoc_data.topics``: the help topics of the Python Language
Reference (``help("assert")`` and friends), about 460 thousand characters of
English prose with code samples, shipped with every CPython.  No download.  The
exact text depends on the Python version; its SHA-256 is recorded with every
study, and a user can pass any other text instead.
"""

from __future__ import annotations

import collections
import hashlib
import math
from typing import Mapping

# Typographic characters of the topics mapped to ASCII, so the vocabulary stays
# the printable ASCII set plus newline.
_ASCII = {
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
    "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00a0": " ",
    "\t": "    ",
}


def normalize(text: str) -> str:
  """Maps typographic characters to ASCII; any other non-ASCII byte becomes '?'."""
  out = []
  for ch in text:
    ch = _ASCII.get(ch, ch)
    if len(ch) == 1 and not (ch == "\n" or " " <= ch <= "~"):
      ch = "?"
    out.append(ch)
  return "".join(out)


def pydoc_text() -> str:
  """The Python help topics, concatenated in sorted topic order, normalised."""
  from pydoc_data.topics import topics  # part of the standard library

  return normalize("".join(topics[k] for k in sorted(topics)))


def unigram_entropy(text: str) -> float:
  """Entropy of the character frequencies of ``text``, in nats per character.

  The cross-entropy of the best model that ignores context; a language model
  that has learned anything about order goes below it.
  """
  if not text:
    raise ValueError("`text` must be a non-empty string.")
  counts = collections.Counter(text)
  n = len(text)
  return -sum(c / n * math.log(c / n) for c in counts.values())


def unigram_cross_entropy(train: str, val: str) -> float:
  """Cross-entropy (nats/char) on ``val`` of the unigram model fitted on ``train``.

  Characters of ``val`` unseen in ``train`` get add-one smoothing.
  """
  counts = collections.Counter(train)
  vocab = set(train) | set(val)
  total = len(train) + len(vocab)
  p = {ch: (counts.get(ch, 0) + 1) / total for ch in vocab}
  return -sum(math.log(p[ch]) for ch in val) / len(val)


def sha256(text: str) -> str:
  return hashlib.sha256(text.encode("utf-8")).hexdigest()


def vocabulary(text: str) -> tuple[str, Mapping[str, int]]:
  """Sorted characters of ``text`` and the map character -> id."""
  chars = "".join(sorted(set(text)))
  return chars, {c: i for i, c in enumerate(chars)}


def bits(nats: float) -> float:
  return nats / math.log(2.0)
