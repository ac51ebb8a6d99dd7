"""The tasks' data: seed 001's x^2 layout, the sine horizon, and the char task's streams and corpus errors."""

from types import SimpleNamespace

import numpy as np
import pytest

from tasks import TaskError, make_task
from tasks.char import CharTask


def x2_cfg(**kw):
    return SimpleNamespace(name="x2", timesteps=100, width=6, noise=0.005, **kw)


def sin_cfg(**kw):
    base = dict(name="sin", seq_len=12, horizon=1, period=20.0, noise=0.0)
    return SimpleNamespace(**{**base, **kw})


def char_cfg(corpus, seq_len=5):
    return SimpleNamespace(name="char", corpus=corpus, seq_len=seq_len, max_corpus_mb=200.0)


def test_x2_is_seed_001_data():
    task = make_task(x2_cfg(), batch_size=1, seed=0)
    b = task.batch(0)
    np.testing.assert_allclose(b.x.reshape(-1), np.linspace(0.01, 1, 600))
    assert b.x.shape == (1, 100, 6) and b.reset
    noise = b.y - b.x**2
    assert abs(noise.std() - 0.005) < 0.0005 and abs(noise.mean()) < 0.001


@pytest.mark.parametrize("horizon", [1, 3, -1])
def test_sine_target_is_the_input_shifted_by_the_horizon(horizon):
    task = make_task(sin_cfg(horizon=horizon), batch_size=4, seed=0)
    b = task.batch(7)
    x, y = b.x[..., 0], b.y[..., 0]
    if horizon > 0:
        np.testing.assert_allclose(y[:, :-horizon], x[:, horizon:])
    else:
        np.testing.assert_allclose(y[:, -horizon:], x[:, :horizon])


def test_sine_batches_depend_only_on_seed_and_step():
    a, b = make_task(sin_cfg(), 4, seed=3), make_task(sin_cfg(), 4, seed=3)
    np.testing.assert_array_equal(a.batch(5).x, b.batch(5).x)
    assert not np.array_equal(a.batch(5).x, a.batch(6).x)


def test_char_streams_continue_across_chunks_and_reset_on_wrap(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("abcdefghij" * 30, encoding="utf-8")
    task = CharTask(char_cfg(str(corpus)), batch_size=2, seed=0)
    b0, b1 = task.batch(0), task.batch(1)
    assert b0.reset and not b1.reset
    np.testing.assert_array_equal(b0.y[:, -1], b1.x[:, 0])  # next chunk starts where the last ended
    np.testing.assert_array_equal(b0.x[:, 1:], b0.y[:, :-1])  # targets are the next characters
    assert task.batch(task.chunks_per_epoch).reset
    assert task.decode(b0.x[0]) == "abcde"


def test_char_builtin_corpus_needs_no_file():
    task = CharTask(char_cfg(None, seq_len=25), batch_size=4, seed=0)
    assert task.input_dim > 60 and 2.5 < task.unigram_entropy < 4.5


@pytest.mark.parametrize(
    "content,message",
    [(None, "no such file"), ("DIR", "is a directory"), (b"", "fewer than 2 distinct"), (b"ok \xff\xfe", "not UTF-8")],
)
def test_bad_corpus_raises_a_config_error_naming_the_problem(tmp_path, content, message):
    path = tmp_path / "corpus.txt"
    if content == "DIR":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(TaskError, match=message):
        CharTask(char_cfg(str(path)), batch_size=1, seed=0)


def test_seq_len_longer_than_the_corpus_is_refused(tmp_path):
    corpus = tmp_path / "short.txt"
    corpus.write_text("hello world, " * 5, encoding="utf-8")
    with pytest.raises(TaskError, match="task.seq_len=100 is too long"):
        CharTask(char_cfg(str(corpus), seq_len=100), batch_size=1, seed=0)
