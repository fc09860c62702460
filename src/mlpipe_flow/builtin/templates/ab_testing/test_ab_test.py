from ab_testing.ab_test import assign, compare, decide


def test_assignment_is_stable_and_balanced():
    keys = [f"user-{i}" for i in range(4000)]
    first = [assign(k) for k in keys]
    assert first == [assign(k) for k in keys]
    share = first.count("treatment") / len(first)
    assert 0.45 < share < 0.55


def test_significance_and_rollback_rule():
    worse = compare(500, 1000, 420, 1000)
    assert worse.significant and decide(worse) == "rollback"
    same = compare(500, 1000, 505, 1000)
    assert not same.significant and decide(same) == "continue"
    assert decide(same, 0.001, 0.05) == "rollback"
