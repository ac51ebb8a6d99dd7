"""Char-level language model over a UTF-8 corpus, min-char-rnn style, batched.

The vocabulary is the set of characters in the corpus; inputs and targets are token ids (the core does
a row gather instead of a one-hot matmul). The first 90 % of the text is for training, split into
``batch_size`` parallel streams read ``seq_len`` characters at a time; the LSTM state is carried from
one chunk to the next (truncated BPTT) and reset when the streams wrap around. The last 10 % scores the
eval loss. With ``corpus: null`` the corpus is the help text that ships inside Python's standard
library (``pydoc_data.topics``): ~0.5 MB of English, no download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.base import Batch, TaskError

# The default corpus (Python's help text, pydoc_data) is imported only when no corpus file is given.

EVAL_FRACTION = 0.1
EVAL_SEQUENCES = 32


def builtin_corpus() -> str:
    """Python's own help topics, joined in a fixed order."""
    from pydoc_data.topics import topics

    return "\n".join(topics[k] for k in sorted(topics))


def read_corpus(path, max_mb: float = 200.0) -> str:
    """The text of ``path`` (UTF-8), or the built-in corpus for None; bad files raise UserError. Only a regular file
    of at most ``max_mb`` megabytes is read (a FIFO would block, /dev/zero never end)."""
    if path is None or str(path) == "":
        return builtin_corpus()
    p = Path(path).expanduser()
    hint = "give a UTF-8 text file, or task.corpus=null for the built-in corpus"
    if not p.exists():
        raise TaskError(f"task.corpus: no such file '{p}'; {hint}")
    if p.is_dir():
        raise TaskError(f"task.corpus: '{p}' is a directory, not a file; {hint}")
    if not p.is_file():
        raise TaskError(f"task.corpus: '{p}' is not a regular file (a pipe or a device); {hint}")
    size = p.stat().st_size / 1e6
    if size > max_mb:
        raise TaskError(
            f"task.corpus: '{p}' is {size:.0f} MB, more than task.max_corpus_mb={max_mb:g}; raise it to read the file "
            "(the whole text is held in memory, 8 bytes a character)"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TaskError(f"task.corpus: '{p}' is not UTF-8 text (bad byte at offset {e.start}); {hint}") from None
    except OSError as e:
        raise TaskError(f"task.corpus: cannot read '{p}' ({e.strerror}); {hint}") from None
    if len(set(text)) < 2:
        raise TaskError(f"task.corpus: '{p}' has {len(text)} characters and fewer than 2 distinct ones; {hint}")
    return text


class CharTask:
    name = "char"
    loss = "xent"

    def __init__(self, cfg, batch_size: int, seed: int, dtype=np.float64):
        text = read_corpus(cfg.corpus, cfg.max_corpus_mb)
        self.chars = sorted(set(text))
        self.input_dim = self.output_dim = len(self.chars)
        index = {ch: i for i, ch in enumerate(self.chars)}
        ids = np.fromiter((index[ch] for ch in text), dtype=np.int64, count=len(text))
        n_train = int(len(ids) * (1 - EVAL_FRACTION))
        self.train, self.heldout = ids[:n_train], ids[n_train:]
        self.seq_len, self.batch_size = cfg.seq_len, batch_size
        self.stream_len = n_train // batch_size
        if self.stream_len < self.seq_len + 1 or len(self.heldout) < self.seq_len + 1:
            raise TaskError(
                f"task.seq_len={self.seq_len} is too long for this corpus: {n_train} training characters give "
                f"{batch_size} streams of {self.stream_len} (and {len(self.heldout)} held out); lower "
                f"task.seq_len or batch_size, or use a longer corpus"
            )
        self.chunks_per_epoch = (self.stream_len - 1) // self.seq_len
        self._starts = np.arange(batch_size)[:, None] * self.stream_len + np.arange(self.seq_len)[None, :]

    @property
    def unigram_entropy(self) -> float:
        """Entropy (nats) of the training text's character frequencies: what a model without context scores."""
        p = np.bincount(self.train, minlength=self.input_dim) / len(self.train)
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    def batch(self, step: int) -> Batch:
        j = step % self.chunks_per_epoch
        pos = self._starts + j * self.seq_len
        return Batch(self.train[pos], self.train[pos + 1], reset=(j == 0))

    def eval_batch(self) -> Batch:
        count = min(EVAL_SEQUENCES, (len(self.heldout) - 1) // self.seq_len)
        pos = np.arange(count)[:, None] * self.seq_len + np.arange(self.seq_len)[None, :]
        return Batch(self.heldout[pos], self.heldout[pos + 1], reset=True)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)

    def seed_token(self, rng: np.random.Generator) -> int:
        """A token to start a sample from: a random character of the training text."""
        return int(self.train[rng.integers(len(self.train))])
