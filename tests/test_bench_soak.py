"""The soak's memory trend: like for like when models come and go."""

from sarai.daemon.cli.bench_soak import _same_models_slope, _slope_per_100


def test_the_slope_with_the_same_models_leaves_out_a_model_that_came_and_went():
    fast, both = ["omni_fast"], ["omni_fast", "omni_quality"]
    samples = []
    for i in range(100):
        quality = 30 <= i < 50  # loaded for a while: 300 MB more, then unloaded again
        samples.append({"rss_anon_mb": 900.0 + 0.02 * i + (300 if quality else 0),
                        "models": both if quality else fast})
    assert abs(_slope_per_100([s["rss_anon_mb"] for s in samples])) > 50  # the raw trend lies
    same = _same_models_slope(samples)["same_models"]
    assert same["models"] == fast and same["samples"] == 60
    assert abs(same["rss_anon_slope_mb_per_100_turns"] - 2.0) < 0.01


def test_no_models_known_no_figure():
    assert _same_models_slope([{"rss_anon_mb": 1.0, "models": None}] * 10) == {}
