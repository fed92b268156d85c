"""Lexical recall: BM25 over the DuckDB `fts` index of the snapshot, scored in numpy.

The index is built by `PRAGMA create_fts_index` (tokenizer, stop words, Porter stemmer and document
frequencies are the fts extension's). A query is split into tokens here exactly as the index's
`fts_main_memories.tokenize` macro does (strip accents, lower-case, split on anything that is not a letter or
digit; `tokenize` below, checked against the macro by the tests: running the macro's Unicode regex in DuckDB
costs ~1.6 ms per query, this ~10 us); DuckDB drops the index's stop words, stems with `stem(.., 'porter')` and
looks the stems up in the index's `dict`. Scoring then runs over the index's postings, exported to CSR arrays
when the snapshot was built, with exactly the formula of `fts_main_memories.match_bm25` (k1 = 1.2, b = 0.75):

    score(d) = sum over query terms t in d of  log10((N - df_t + 0.5) / (df_t + 0.5) + 1)
                                               * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * len(d) / avgdl))

`match_bm25` evaluates that per document through a correlated macro (6 to 24 ms per query at 100k memories
here); scoring all documents at once from the postings takes well under a millisecond. Tests check that both
give the same scores.

The lexical signal is that score divided by the query's own score (the query scored as a document, every
query term counted, also terms no memory contains, whose df is 0): the share of the query's term weight a
memory matches, in [0, 1]. Dividing by the best match instead would give a memory that shares one common word
with the query the same 1.0 as an exact match.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

import numpy as np

from codex_dreams.retrieval.snapshot import FTS_STEMMER, FTS_TABLE

# The tokens are inlined as a literal: binding any Python parameter costs DuckDB two failed `import pandas`
# lookups on sys.path (~0.4 ms per query here). Tokens hold only letters and digits; quotes are doubled anyway.
QUERY_TERMS_SQL = f"""
with tokens as (select unnest({{tokens}}::varchar[]) as token),
stems as (
    select stem(token, '{FTS_STEMMER}') as term from tokens
    where token not in (select sw from fts_main_{FTS_TABLE}.stopwords)
)
select stems.term, dict.termid, coalesce(dict.df, 0) as df
from stems left join fts_main_{FTS_TABLE}.dict as dict on dict.term = stems.term
"""
# FTS_IGNORE is [^\p{L}\p{N}]+ : Python's \W is "not alphanumeric" (str.isalnum: letters and numbers), plus "_".
_NOT_ALNUM = re.compile(r"[\W_]+")


def tokenize(text: str) -> list[str]:
    """The fts index's tokenizer: strip_accents, lower, replace [^\\p{L}\\p{N}]+ by a space, split."""
    decomposed = unicodedata.normalize("NFD", text)
    # per character: DuckDB's lower has no context rules (Python's str.lower turns a final sigma into "ς")
    plain = "".join(c.lower() for c in decomposed if not unicodedata.combining(c))
    return [token for token in _NOT_ALNUM.split(plain) if token]


def _literal(tokens: list[str]) -> str:
    return "[" + ", ".join("'" + token.replace("'", "''") + "'" for token in tokens) + "]"


@dataclass(frozen=True)
class QueryTerms:
    known: list[tuple[int, int]]  # (termid, df) of the distinct query terms the index holds
    self_score: float             # BM25 of the query against itself (0 when it has no indexed-able term)


@dataclass(frozen=True)
class LexicalHits:
    rows: np.ndarray    # int64 row ids with a positive score, best first
    scores: np.ndarray  # float64 BM25 scores, aligned with rows


class LexicalIndex:
    def __init__(self, arrays, n: int, *, k1: float, b: float) -> None:
        self.term_indptr = arrays["term_indptr"]
        self.rows = arrays["rows"]
        self.tf = arrays["tf"]
        self.doc_len = arrays["doc_len"]
        self.num_docs = int(arrays["num_docs"])
        self.avgdl = float(arrays["avgdl"]) or 1.0
        self.n = n
        self.k1 = k1
        self.b = b

    def idf(self, df: int) -> float:
        # DuckDB's log() is base 10; match_bm25 uses it
        return math.log10((self.num_docs - df + 0.5) / (df + 0.5) + 1.0)

    def query_terms(self, cursor, text: str) -> QueryTerms:
        tokens = tokenize(text)
        if self.num_docs == 0 or not tokens:
            return QueryTerms([], 0.0)
        rows = cursor.execute(QUERY_TERMS_SQL.format(tokens=_literal(tokens))).fetchall()
        counts = Counter(term for term, _, _ in rows)
        dfs = {term: int(df) for term, _, df in rows}
        known = {int(termid): int(df) for _, termid, df in rows if termid is not None}
        k1, b, length = self.k1, self.b, len(rows)
        self_score = sum(self.idf(dfs[term]) * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * length / self.avgdl))
                         for term, tf in counts.items())
        return QueryTerms(sorted(known.items()), self_score)

    def score(self, terms: list[tuple[int, int]]) -> np.ndarray:
        """BM25 (match_bm25's formula) for every row; zeros where no query term occurs."""
        scores = np.zeros(self.n, dtype=np.float64)
        k1, b = self.k1, self.b
        for termid, df in terms:
            start, end = int(self.term_indptr[termid]), int(self.term_indptr[termid + 1])
            if start == end:
                continue
            rows = self.rows[start:end]
            tf = self.tf[start:end].astype(np.float64)
            norm = k1 * (1.0 - b + b * self.doc_len[rows].astype(np.float64) / self.avgdl)
            scores[rows] += self.idf(df) * tf * (k1 + 1.0) / (tf + norm)  # a term's postings hold each row once
        return scores

    def search(self, cursor, text: str) -> tuple[np.ndarray, float]:
        """(BM25 of every row, the query's self-score)."""
        terms = self.query_terms(cursor, text)
        return self.score(terms.known), terms.self_score


def top(scores: np.ndarray, n: int) -> LexicalHits:
    """The `n` best rows with a positive score, best first (ties by row id)."""
    positive = np.flatnonzero(scores > 0)
    if len(positive) > n:
        part = np.argpartition(-scores[positive], n - 1)[:n]
        positive = positive[part]
    order = np.lexsort((positive, -scores[positive]))
    rows = positive[order]
    return LexicalHits(rows=rows.astype(np.int64), scores=scores[rows])
