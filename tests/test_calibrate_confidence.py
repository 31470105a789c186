"""The confidence bands' calibration (``bench/calibrate_confidence.py``): how thresholds are chosen from judged
replies, and that the settings' defaults are the thresholds the recorded development-set run chose."""

from __future__ import annotations

import json
from pathlib import Path

from bench.calibrate_confidence import band_of, band_table, choose, judge

RESULT = Path(__file__).resolve().parents[1] / "bench" / "results" / "calibrate_confidence.json"


def test_thresholds_keep_every_band_on_target():
    # 0.90-0.99: 10 replies, all right; 0.70-0.79: 0.70-0.77 right, 0.78 and 0.79 wrong; 0.00-0.27 (step 0.03):
    # wrong but 0.24 and 0.27
    points = ([((90 + i) / 100, True) for i in range(10)] + [((70 + i) / 100, i < 8) for i in range(10)]
              + [(3 * i / 100, i >= 8) for i in range(10)])
    bands = choose(points, high_precision=0.9, low_wrong=0.6, min_band=10)
    # from 0.79 up: 11 replies, 10 right (91%); from 0.78 up: 12, 10 right (83%): high stops at 0.79 (a lower start
    # such as 0.22, 20 right of 22, would reach 90% only by skipping the 83% band in between)
    assert bands.high == 0.79
    # below 0.28: 10 replies, 8 wrong; ... below 0.73: 13, 8 wrong (62%); below 0.74: 14, 8 wrong (57%)
    assert bands.low == 0.73
    table = band_table(points, bands.high, bands.low)
    assert table == {"high": {"n": 11, "right": 10, "right_share": 0.909},
                     "check": {"n": 6, "right": 5, "right_share": 0.833},
                     "low": {"n": 13, "right": 5, "right_share": 0.385}}
    assert band_of(0.79, 0.79, 0.73) == "high" and band_of(0.73, 0.79, 0.73) == "check"
    assert band_of(0.7299, 0.79, 0.73) == "low"


def test_no_threshold_when_no_band_reaches_its_target():
    coin = [(i / 40, i % 2 == 0) for i in range(40)]  # right half the time at every confidence
    bands = choose(coin, high_precision=0.9, low_wrong=0.6, min_band=10)
    assert bands.high is None and bands.low is None
    assert choose(coin[:5], min_band=10).high is None  # too few replies for any band


def test_replies_are_judged_as_bench_answers_judges_them():
    answerable = {"answerable": True, "facts": ["30 days"]}
    assert judge(answerable, "You have 30 days [1].", False) == (False, True)
    assert judge(answerable, "You have 14 days [1].", False) == (False, False)
    assert judge(answerable, "I don't know the answer to that from our help centre.", False)[0] is True
    assert judge({"answerable": False, "facts": []}, "Sure, 30 days.", False) == (False, False)
    assert judge({"answerable": False, "facts": []}, "anything", True) == (True, True)


def test_the_settings_defaults_are_the_calibrated_thresholds():
    from agent.settings import Settings

    recorded = json.loads(RESULT.read_text())
    assert recorded["sets"] == ["ledgerly", "pawpost"]  # development sets only
    assert "data/eval" not in recorded["command"] and "kb_questions" not in recorded["command"]
    fields = Settings.model_fields
    assert fields["confidence_high"].default == recorded["thresholds"]["high"]
    assert fields["confidence_low"].default == recorded["thresholds"]["low"]
    assert "bench.calibrate_confidence" in fields["confidence_high"].description
