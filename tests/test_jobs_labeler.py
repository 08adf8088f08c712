import numpy as np
import pytest

from jobs.labeler import Labeler


def test_top_k_best_first():
    lab = Labeler(("a", "b", "c", "d"), 2)
    labels, scores = lab(np.array([[0.1, 0.4, 0.2, 0.3], [0.7, 0.1, 0.1, 0.1]]))
    assert labels[0] == ["b", "d"] and labels[1][0] == "a"
    assert scores[0] == pytest.approx([0.4, 0.3])
    assert Labeler(("a", "b"), 5)(np.array([[0.2, 0.8]])) == ([["b", "a"]], [pytest.approx([0.8, 0.2])])
    assert Labeler(("a",), 1)(np.zeros((0, 1))) == ([], [])


def test_errors():
    with pytest.raises(ValueError):
        Labeler((), 1)
    with pytest.raises(ValueError):
        Labeler(("a",), 0)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        Labeler(("a", "b"), 1)(np.zeros((1, 3)))
