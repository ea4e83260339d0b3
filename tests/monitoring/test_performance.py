"""Performance estimation: CBPE on the real category model, calibration, interval coverage,
error-stream change detection and label readiness."""

from __future__ import annotations

import datetime
import doctest
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from titans.data.synth import generate
from titans.errors import InputError, NotFittedError
from titans.models.base import TrainedModel, get_spec
from titans.monitoring import performance
from titans.monitoring.performance import (
    ConfidenceCalibration,
    ErrorStreamDetector,
    Interval,
    estimate_accuracy,
    label_ready_mask,
    realised_accuracy,
    realised_mean_error,
)

UTC = datetime.UTC


def test_doctests() -> None:
    result = doctest.testmod(performance, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0


# ----------------------------------------------------------------------------- CBPE on the model

ROWS, SEED, DRIFT = 40_000, 1, "2024-10-01"
#: covariate shifts change the inputs, not the labelling rule; concept_drift changes the labels
SCENARIOS = {
    "none": [],
    "payment_mix_shift": [f"payment_mix_shift@{DRIFT}:0.6"],
    "amount_inflation": [f"amount_inflation@{DRIFT}:1.5"],
    "new_merchants": [f"new_merchants@{DRIFT}:0.6"],
    "concept_drift": [f"concept_drift@{DRIFT}:0.5"],
}


def _outcome(model: TrainedModel, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Top-class confidence and whether the prediction was right, as CategorySpec.evaluate
    scores it: labels lower-cased and stripped, labels the model cannot represent -> other."""
    out = model.predict(rows)
    classes = [c.removeprefix("proba_") for c in out.columns if c.startswith("proba_")]
    truth = rows["category"].astype("string").str.strip().str.lower().fillna("other")
    truth_values = np.where(truth.isin(classes), truth.to_numpy(dtype=object), "other")
    correct = out["prediction"].to_numpy(dtype=object) == truth_values
    return out["probability"].to_numpy(dtype=np.float64), correct


@pytest.fixture(scope="module")
def cbpe_run() -> dict[str, Any]:
    """One category model trained before the drift date, calibrated on held-out rows before
    it, then scored on the period after it under each scenario."""
    frames = {name: generate(ROWS, seed=SEED, drifts=d) for name, d in SCENARIOS.items()}
    spec = get_spec("category")
    base = frames["none"]
    before = base["date"] < DRIFT
    for frame in frames.values():
        # the premise of comparing scenarios with one model: the past is the same in all
        pd.testing.assert_frame_equal(frame[frame["date"] < DRIFT], base[before])
    train, test = spec.split(spec.select(base), test_fraction=0.4)
    assert train["date"].max() < pd.Timestamp(DRIFT)
    model = spec.fit(train, SEED)
    reference = test[test["date"] < DRIFT]
    ref_conf, ref_correct = _outcome(model, reference)
    _, test_correct = _outcome(model, test)
    assert test_correct.mean() == pytest.approx(spec.evaluate(model, test)["accuracy"])
    calibration = ConfidenceCalibration.fit(ref_conf, ref_correct)
    windows = {}
    for name, frame in frames.items():
        rows = spec.select(frame)
        current = rows[rows["date"] >= DRIFT]
        conf, correct = _outcome(model, current)
        windows[name] = {
            "conf": conf,
            "correct": correct,
            "estimate": estimate_accuracy(calibration, conf),
            "realised": float(correct.mean()),
        }
    return {
        "calibration": calibration,
        "reference_correct": ref_correct,
        "windows": windows,
    }


@pytest.mark.slow
def test_cbpe_tracks_realised_accuracy_under_covariate_shift(cbpe_run: dict[str, Any]) -> None:
    windows = cbpe_run["windows"]
    for name in ("none", "payment_mix_shift", "amount_inflation", "new_merchants"):
        estimate, realised = windows[name]["estimate"], windows[name]["realised"]
        assert estimate.n > 5_000
        assert estimate.contains(realised), f"{name}: realised {realised:.4f} not in {estimate}"
        # both variance terms are present and of the expected size (about 0.3-0.5 points each)
        assert 0.001 < estimate.detail["sampling_se"] < 0.01
        assert 0.001 < estimate.detail["calibration_se"] < 0.01

    # the model is over-confident: its raw mean confidence is not an accuracy estimate
    none = windows["none"]
    assert none["conf"].mean() > none["estimate"].upper + 0.01

    # new merchants really cost accuracy, and the estimate sees it without a single label
    new = windows["new_merchants"]
    assert none["realised"] - new["realised"] > 0.005
    p_none = cbpe_run["calibration"].calibrated(none["conf"])
    p_new = cbpe_run["calibration"].calibrated(new["conf"])
    # the two estimates share the calibration map; what separates them is which rows came
    se_diff = math.sqrt(p_none.var() / p_none.size + p_new.var() / p_new.size)
    assert none["estimate"].value - new["estimate"].value > 3 * se_diff


@pytest.mark.slow
def test_cbpe_is_blind_to_concept_drift_but_labels_and_the_error_stream_are_not(
    cbpe_run: dict[str, Any],
) -> None:
    windows = cbpe_run["windows"]
    none, drifted = windows["none"], windows["concept_drift"]
    # Concept drift relabels rows and leaves the inputs alone: the model's confidences, hence
    # the CBPE estimate, are exactly those of the undrifted window, while accuracy halves.
    # CBPE assumes P(correct | confidence) is fixed, which is precisely what concept drift
    # breaks; only labels can reveal it.
    assert drifted["estimate"].value == pytest.approx(none["estimate"].value, abs=1e-12)
    assert drifted["realised"] < drifted["estimate"].lower - 0.2

    # the labelled path: 300 early labels are enough to contradict the estimate
    early = realised_accuracy(drifted["correct"][:300])
    assert early.upper < drifted["estimate"].lower

    # the error stream: reference errors, then the drifted period, in time order
    reference_errors = ~cbpe_run["reference_correct"]
    stream = np.concatenate([reference_errors, ~drifted["correct"]]).astype(float)
    detector = ErrorStreamDetector()
    changes = detector.update(stream)
    start = reference_errors.size
    assert changes, "ADWIN found no change in a stream whose error rate jumps ~7x"
    assert all(c >= start for c in changes)
    assert changes[0] - start < 300


# ----------------------------------------------------------------------------- calibration


def test_calibration_recovers_a_known_map_and_round_trips() -> None:
    rng = np.random.default_rng(3)
    conf = rng.uniform(0.0, 1.0, 20_000)
    calibration = ConfidenceCalibration.fit(conf, rng.uniform(size=conf.size) < conf**2)
    grid = np.linspace(0.05, 0.95, 91)
    fitted = calibration.calibrated(grid)
    assert np.abs(fitted - grid**2).mean() < 0.015
    assert np.abs(fitted - grid**2).max() < 0.06
    assert (np.diff(fitted) >= 0).all()
    assert calibration.n == 20_000
    # compact: a step function's corners, not the reference set
    assert len(calibration.x) < 400
    assert sum(calibration.support) >= calibration.n  # corners of one block share its count

    restored = ConfidenceCalibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert restored == calibration
    assert np.array_equal(restored.calibrated(grid), fitted)


def test_calibration_inputs_are_checked() -> None:
    with pytest.raises(InputError, match="has 3 values but correct has 2"):
        ConfidenceCalibration.fit([0.5, 0.6, 0.7], [1, 0])
    with pytest.raises(InputError, match="empty"):
        ConfidenceCalibration.fit([], [])
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        ConfidenceCalibration.fit([0.5, 1.5], [1, 0])
    with pytest.raises(InputError, match="0/1"):
        ConfidenceCalibration.fit([0.5, 0.6], [1, 2])
    with pytest.raises(InputError, match="missing or infinite"):
        ConfidenceCalibration.fit([0.5, math.nan], [1, 0])
    with pytest.raises(InputError, match="missing x"):
        ConfidenceCalibration.from_dict({"y": [1.0], "n": 1, "reference_accuracy": 1.0})
    with pytest.raises(InputError, match="not increasing"):
        ConfidenceCalibration.from_dict(
            {"x": [0.9, 0.1], "y": [0.1, 0.9], "n": 2, "reference_accuracy": 0.5}
        )
    with pytest.raises(NotFittedError, match="fit it"):
        ConfidenceCalibration([], [], 0, 0.0).calibrated([0.5])
    with pytest.raises(InputError, match="empty") as info:
        estimate_accuracy(ConfidenceCalibration.fit([0.5], [1]), [])
    assert "\n" not in str(info.value)


def test_a_constant_confidence_and_a_hand_built_map_still_give_intervals() -> None:
    single = ConfidenceCalibration.fit([0.7] * 10, [1] * 7 + [0] * 3)
    estimate = estimate_accuracy(single, [0.2, 0.7, 0.99])
    assert estimate.value == pytest.approx(0.7)
    assert estimate.lower < 0.7 < estimate.upper
    # without block support the whole reference counts as one block: acc(1-acc)/n, shrunk
    hand = ConfidenceCalibration(x=[0.0, 1.0], y=[0.0, 1.0], n=100, reference_accuracy=0.8)
    estimate = estimate_accuracy(hand, [0.8] * 1_000)
    p = (80 + 0.5) / 101
    assert estimate.detail["calibration_se"] == pytest.approx(math.sqrt(p * (1 - p) / 100))


# ----------------------------------------------------------------------------- coverage


def test_wilson_interval_covers_at_its_nominal_rate() -> None:
    n, p = 30, 0.8
    exact = sum(
        stats.binom.pmf(k, n, p) * realised_accuracy([1] * k + [0] * (n - k)).contains(p)
        for k in range(n + 1)
    )
    assert 0.93 <= exact <= 0.97  # Wilson's coverage oscillates around 95 % with n and p
    rng = np.random.default_rng(11)
    draws = rng.uniform(size=(2_000, n)) < p
    simulated = np.mean([realised_accuracy(row).contains(p) for row in draws])
    assert abs(simulated - exact) < 0.015


def test_wilson_interval_is_sound_for_tiny_samples() -> None:
    one = realised_accuracy([True])
    assert (one.value, one.upper, one.n, one.method) == (1.0, 1.0, 1, "wilson")
    assert one.lower == pytest.approx(1 / (1 + 1.959964**2), rel=1e-5)  # 0.2065
    none_right = realised_accuracy(np.zeros(5, dtype=bool), confidence_level=0.9)
    assert none_right.lower == 0.0 and 0.2 < none_right.upper < 0.4
    with pytest.raises(InputError, match="empty"):
        realised_accuracy([])


def test_cbpe_interval_covers_the_realised_accuracy_under_shift() -> None:
    """Each trial draws a fresh reference set, fits the map, then a shifted window whose labels
    come from the same P(correct | confidence) = c²: the interval must cover the window's
    realised accuracy ~95 % of the time. The sampling term alone must not be enough."""
    rng = np.random.default_rng(5)
    trials, n_ref, n_cur = 2_000, 1_000, 1_000
    covered = sampling_only = 0
    for _ in range(trials):
        ref_conf = rng.uniform(0.3, 1.0, n_ref)
        calibration = ConfidenceCalibration.fit(ref_conf, rng.uniform(size=n_ref) < ref_conf**2)
        conf = rng.uniform(0.5, 1.0, n_cur)  # covariate shift towards confident rows
        realised = float(np.mean(rng.uniform(size=n_cur) < conf**2))
        estimate = estimate_accuracy(calibration, conf)
        covered += estimate.contains(realised)
        z = stats.norm.ppf(0.975)
        sampling_only += abs(realised - estimate.value) <= z * estimate.detail["sampling_se"]
    assert 0.93 <= covered / trials <= 0.97
    assert sampling_only / trials < 0.85


def test_calibration_term_matches_the_maps_real_error_when_the_window_sits_at_an_edge() -> None:
    """A window crowded into the thinly supported low-confidence end of the reference: the
    estimate's error from the finite reference (estimate minus the true mean P(correct)) must
    have the spread the calibration term claims. The plain reference-size binomial term,
    acc(1 - acc)/n_ref, would understate it by about a third here."""
    rng = np.random.default_rng(9)
    n_ref = n_cur = 2_000
    errors, claimed, plain = [], [], []
    for _ in range(500):
        ref_conf = rng.uniform(0.3, 1.0, n_ref)
        calibration = ConfidenceCalibration.fit(ref_conf, rng.uniform(size=n_ref) < ref_conf**2)
        conf = rng.uniform(0.3, 0.5, n_cur)
        estimate = estimate_accuracy(calibration, conf)
        errors.append(estimate.value - float(np.mean(conf**2)))
        claimed.append(estimate.detail["calibration_se"])
        acc = calibration.reference_accuracy
        plain.append(math.sqrt(acc * (1 - acc) / n_ref))
    spread = float(np.std(errors))
    assert 0.85 < spread / float(np.mean(claimed)) < 1.15
    assert spread / float(np.mean(plain)) > 1.2


def test_t_interval_for_mean_absolute_error_covers_at_its_nominal_rate() -> None:
    sigma, n = 2.0, 30
    true_mae = sigma * math.sqrt(2 / math.pi)  # mean of |N(0, sigma)|
    rng = np.random.default_rng(2)
    errors = np.abs(rng.normal(0.0, sigma, size=(2_000, n)))
    coverage = np.mean([realised_mean_error(row).contains(true_mae) for row in errors])
    assert 0.93 <= coverage <= 0.97


def test_mean_error_interval_edges() -> None:
    one = realised_mean_error([2.5])
    assert (one.value, one.lower, one.upper) == (2.5, 0.0, math.inf)
    r = realised_mean_error([0.1, 0.1, 5.0], metric="mape")
    assert r.metric == "mape" and r.lower == 0.0 and r.upper > r.value
    assert r.detail["df"] == 2.0
    with pytest.raises(InputError, match="negative"):
        realised_mean_error([1.0, -1.0])
    with pytest.raises(InputError, match="empty"):
        realised_mean_error([])


def test_interval_serialises_and_compares() -> None:
    interval = Interval("accuracy", 0.9, 0.85, 0.95, 100, "wilson")
    assert interval.contains(0.85) and interval.contains(0.95)
    assert not interval.contains(0.96) and not interval.contains(math.nan)
    data = interval.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["confidence_level"] == 0.95 and data["n"] == 100


# ----------------------------------------------------------------------------- error stream


def _rate_jump(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.r_[rng.uniform(size=2_000) < 0.1, rng.uniform(size=2_000) < 0.4].astype(float)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adwin_finds_an_error_rate_jump_soon_and_nothing_before(seed: int) -> None:
    detector = ErrorStreamDetector()
    changes = detector.update(_rate_jump(seed))
    assert changes and all(c >= 2_000 for c in changes)
    assert changes[0] < 2_300
    assert detector.n_seen == 4_000 and detector.change_points == changes
    assert detector.method == "adwin"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_page_hinkley_finds_an_upward_shift_of_absolute_errors(seed: int) -> None:
    rng = np.random.default_rng(seed)
    errors = np.r_[np.abs(rng.normal(0, 1, 2_000)), np.abs(rng.normal(0, 2, 2_000))]
    detector = ErrorStreamDetector("page_hinkley", mode="up", delta=0.05, threshold=50)
    changes = detector.update(errors)
    assert changes and all(c >= 2_000 for c in changes)
    assert changes[0] < 2_200
    assert detector.params == {"mode": "up", "delta": 0.05, "threshold": 50}


@pytest.mark.parametrize("method", ["adwin", "page_hinkley"])
def test_chunked_updates_find_the_same_change_points(method: str) -> None:
    stream = _rate_jump(7)
    whole = ErrorStreamDetector(method).update(stream)
    assert whole
    chunked = ErrorStreamDetector(method)
    found: list[int] = []
    for chunk in np.array_split(stream, [1, 37, 500, 2_001, 2_050, 3_999]):
        found += chunked.update(chunk)
    assert found == whole == chunked.change_points
    assert chunked.to_dict()["n_seen"] == stream.size


def test_error_stream_detector_rejects_bad_setup() -> None:
    with pytest.raises(InputError, match="adwin, page_hinkley"):
        ErrorStreamDetector("cusum")
    with pytest.raises(InputError, match="bad parameters for adwin"):
        ErrorStreamDetector("adwin", window=10)
    with pytest.raises(InputError, match="missing or infinite"):
        ErrorStreamDetector().update([0.0, math.nan])
    assert ErrorStreamDetector().update([]) == []


# ----------------------------------------------------------------------------- label readiness

NOW = datetime.datetime(2024, 3, 10, 12, tzinfo=UTC)


def test_label_ready_mask_with_a_delay() -> None:
    stamps = pd.Series(
        pd.to_datetime(
            ["2024-03-01 00:00", "2024-03-07 12:00", "2024-03-07 12:00:01", "2024-03-10", None],
            utc=True,
            format="ISO8601",
        )
    )
    expected = [True, True, False, False, False]  # boundary inclusive; NaT never ready
    assert label_ready_mask(stamps, NOW, datetime.timedelta(days=3)).tolist() == expected
    # the same instants in another zone, a numpy datetime64 array (UTC) and a Timedelta
    paris = stamps.dt.tz_convert("Europe/Paris")
    assert label_ready_mask(paris, NOW, pd.Timedelta("3D")).tolist() == expected
    naive_utc = stamps.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    assert label_ready_mask(naive_utc, pd.Timestamp(NOW), np.timedelta64(3, "D")).tolist() == (
        expected
    )
    assert label_ready_mask(stamps, NOW, datetime.timedelta(0)).tolist() == [
        True,
        True,
        True,
        True,
        False,
    ]
    assert label_ready_mask(pd.Series([], dtype="datetime64[ns, UTC]"), NOW, "1D").size == 0


def test_label_ready_mask_rejects_bad_input() -> None:
    stamps = pd.Series(pd.to_datetime(["2024-03-01"], utc=True))
    cases = [
        ((stamps, NOW, datetime.timedelta(hours=-1)), "non-negative"),
        ((stamps, NOW, 3), "no unit"),
        ((stamps, NOW, "soon"), "not a duration"),
        ((stamps, NOW.replace(tzinfo=None), "1D"), "naive"),
        ((stamps.dt.tz_localize(None), NOW, "1D"), "naive"),
        ((["yesterday-ish"], NOW, "1D"), "must be datetimes"),
    ]
    for args, message in cases:
        with pytest.raises(InputError, match=message) as info:
            label_ready_mask(*args)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("level", [0.0, 1.0, -0.5, 95, math.nan, "high"])
def test_confidence_level_outside_zero_one_is_refused(level: Any) -> None:
    calibration = ConfidenceCalibration.fit([0.6, 0.9], [0, 1])
    for call in (
        lambda: estimate_accuracy(calibration, [0.7], confidence_level=level),
        lambda: realised_accuracy([1, 0], confidence_level=level),
        lambda: realised_mean_error([1.0, 2.0], confidence_level=level),
    ):
        with pytest.raises(InputError, match=r"outside \(0, 1\)"):
            call()
