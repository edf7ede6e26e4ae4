r"""A character corpus that is the same on every platform: a seeded synthetic language with Zipf-like statistics.

``char_corpus(length, seed)`` returns ``length`` token ids (int64 NumPy) over the 95 printable
ASCII characters, ``ALPHABET[i]`` being the character of token ``i`` (``decode`` turns ids back
into text). Every number comes from :class:`SplitMix64`, a 64-bit integer generator written
here, and every draw is integer arithmetic (no floating point, no NumPy or Python random
stream), so the same seed gives the same bytes on every machine, Python and NumPy version.
Host-side module: the corpus is data, made once on the host as NumPy integers; models move the
batches next to their parameters (``example_batch(..., like=theta)``).

The language (all ranks counted from 1):

* a lexicon of ``words`` words (default 1000); word lengths are ``1 + (u mod 7)`` characters,
  each character drawn from the 94 visible characters with weight ``∝ 1/rank`` (the order of
  ``ALPHABET``: lower-case letters by English frequency, then capitals, digits, punctuation);
* a text of words separated by single spaces (token 0), a word drawn from the lexicon with
  weight ``∝ 1/rank`` -- Zipf's law -- through one of ``contexts`` (default 8) fixed
  permutations of the ranks, chosen by the previous word's index modulo ``contexts``, so the
  next word depends on the one before (a first-order Markov chain a model can learn);
* weights are the integers ``⌊2⁴⁰ / rank⌋`` and a draw is ``u mod Σ weights`` located in the
  cumulative sums (the modulo bias, below 2⁻²⁰, is part of the definition).

Why it exercises Pan & Li's effect: a few tokens dominate (the space about 1/5 of all
characters, the ten commonest characters well over half), while most of the 95 tokens are
rare. The gradient of the token-embedding row and of the output-head row of a token scales
with how often it occurs (embedding) or is predicted with mass (head), so the loss's
curvature is concentrated on a small fraction of coordinates and its per-coordinate scale is
heavy-tailed -- the coordinate-concentrated sharpness that makes SGD's direction −g much
sharper than Adam's or a clipped one.
"""

from __future__ import annotations

import bisect
import functools

import numpy as np

from ._base import check_int

__all__ = ["ALPHABET", "SplitMix64", "char_corpus", "decode", "encode"]

_MASK = (1 << 64) - 1

ALPHABET = (
    " etaoinshrdlcumwfgypbvkjxqz"
    "ETAOINSHRDLCUMWFGYPBVKJXQZ"
    ".,'\"-;:!?()0123456789"
    "#$%&*+/<=>@[\\]^_`{|}~"
)
assert len(ALPHABET) == 95 and len(set(ALPHABET)) == 95


class SplitMix64:
    """splitmix64 (Steele, Lea & Flood 2014): a 64-bit integer stream from a seed, the same everywhere."""

    def __init__(self, seed: int):
        self.state = int(seed) & _MASK

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """An integer in [0, n) (``next() mod n``)."""
        return self.next() % n

    def permutation(self, n: int) -> list[int]:
        """A Fisher-Yates shuffle of ``range(n)``."""
        p = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.below(i + 1)
            p[i], p[j] = p[j], p[i]
        return p


class _Zipf:
    """Draws ranks 0..n-1 with integer weights ⌊2⁴⁰ / (rank + 1)⌋."""

    def __init__(self, n: int):
        total, self.cum = 0, []
        for r in range(n):
            total += (1 << 40) // (r + 1)
            self.cum.append(total)
        self.total = total

    def draw(self, rng: SplitMix64) -> int:
        return bisect.bisect_right(self.cum, rng.below(self.total))


@functools.lru_cache(maxsize=8)
def _corpus(length: int, seed: int, words: int, contexts: int) -> np.ndarray:
    rng = SplitMix64(seed)
    letters = _Zipf(len(ALPHABET) - 1)
    lexicon = []
    for _ in range(words):
        n = 1 + rng.below(7)
        lexicon.append([1 + letters.draw(rng) for _ in range(n)])
    perms = [rng.permutation(words) for _ in range(contexts)]
    pick = _Zipf(words)
    out: list[int] = []
    prev = 0
    while len(out) < length:
        w = perms[prev % contexts][pick.draw(rng)]
        out.extend(lexicon[w])
        out.append(0)
        prev = w
    arr = np.array(out[:length], dtype=np.int64)
    arr.flags.writeable = False
    return arr


DEFAULT_LENGTH = 1 << 18


def char_corpus(length: int = DEFAULT_LENGTH, seed: int = 0, *, words: int = 1000, contexts: int = 8) -> np.ndarray:
    """``length`` token ids (int64 NumPy, a fresh copy) of the seeded synthetic language (module docstring)."""
    fn = "char_corpus"
    length = check_int(fn, "length", length, 2)
    seed = check_int(fn, "seed", seed, 0, (1 << 64) - 1)
    words = check_int(fn, "words", words, 1)
    contexts = check_int(fn, "contexts", contexts, 1)
    return np.array(_corpus(length, seed, words, contexts), copy=True)


def decode(tokens) -> str:
    """The text of a 1-D sequence of token ids."""
    return "".join(ALPHABET[int(t)] for t in np.asarray(tokens).reshape(-1))


def encode(text: str) -> np.ndarray:
    """Token ids (int64) of a text made of printable ASCII characters."""
    index = {c: i for i, c in enumerate(ALPHABET)}
    bad = [c for c in text if c not in index]
    if bad:
        raise ValueError(f"encode: text holds characters outside printable ASCII, e.g. {bad[0]!r}")
    return np.array([index[c] for c in text], dtype=np.int64)
