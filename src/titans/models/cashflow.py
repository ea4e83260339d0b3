"""cashflow: forecast daily net cash flow (sum of signed amounts per day) for the next N days.

A *direct* multi-horizon model: every training sample is a pair (forecast origin ``o``,
target day ``d = o + h``) with calendar features of ``d`` and recent-level features known at
``o`` (trailing means, the last weeks' values on ``d``'s weekday, last month's value on ``d``'s
day of month). One HistGradientBoostingRegressor with absolute-error loss (MAE is the metric)
learns ``y(d) - level(o)``, so a business that grows or shrinks keeps a sensible forecast.
The interval comes from residual quantiles on a later slice of the training period.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from titans.errors import InputError, NotFittedError, TrainingError
from titans.models import metrics
from titans.models.base import ModelSpec, TrainedModel

#: trailing window (days) of the level feature the target is measured against
LEVEL_DAYS = 28
#: how many past same-weekday values feed the weekday profile feature
WEEKS_BACK = 4
#: days of the training series kept in the model so it can forecast without new history
TAIL_DAYS = 2 * LEVEL_DAYS
#: central coverage of the forecast interval
INTERVAL_COVERAGE = 0.9
#: fewer training samples than this and the model falls back to a weekday profile
MIN_SAMPLES = 60

FEATURE_NAMES: tuple[str, ...] = (
    "horizon",
    "dow",
    "dom",
    "days_to_month_end",
    "is_month_start",
    "is_month_end",
    "level_28",
    "level_7",
    "same_dow_mean",
    "same_dow_last",
    "same_dom_last_month",
)
_CATEGORICAL = np.array([name == "dow" for name in FEATURE_NAMES])


def daily_net(frame: pd.DataFrame) -> pd.Series:
    """Net cash flow per calendar day (signed sum), days without transactions as 0.

    >>> f = pd.DataFrame({"date": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-03"]),
    ...                   "amount": [100.0, -30.0, -5.0]})
    >>> daily_net(f).tolist()
    [70.0, 0.0, -5.0]
    """
    dates = pd.to_datetime(frame["date"], errors="coerce").dt.normalize()
    amounts = pd.to_numeric(frame["amount"], errors="coerce")
    keep = dates.notna().to_numpy() & np.isfinite(amounts.to_numpy(dtype=np.float64))
    if not keep.any():
        return pd.Series([], index=pd.DatetimeIndex([], freq="D"), dtype=np.float64)
    sums = amounts[keep].groupby(dates[keep]).sum()
    days = pd.date_range(sums.index.min(), sums.index.max(), freq="D")
    return sums.reindex(days, fill_value=0.0).astype(np.float64)


def seasonal_naive(history: np.ndarray, horizon: int, season: int = 7) -> np.ndarray:
    """Repeat the last observed week (value at t-7, recursively) for ``horizon`` days.

    A history shorter than one season repeats what there is.

    >>> seasonal_naive(np.arange(10.0), 9).tolist()
    [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 3.0, 4.0]
    """
    if history.size == 0:
        return np.zeros(horizon)
    season = min(season, history.size)
    last = history[-season:]
    return np.resize(last, horizon).astype(np.float64)


def _features(
    y: np.ndarray, start: pd.Timestamp, origins: np.ndarray, horizons: np.ndarray
) -> np.ndarray:
    """Feature matrix for (origin, horizon) pairs over the daily series ``y`` starting at ``start``.

    Only values of ``y`` at or before each origin are used (no look-ahead).
    """
    n_hist = origins + 1  # days known at the origin
    csum = np.concatenate([[0.0], np.cumsum(y)])

    def trailing_mean(window: int) -> np.ndarray:
        lo = np.maximum(0, n_hist - window)
        return (csum[n_hist] - csum[lo]) / (n_hist - lo)

    target = origins + horizons
    # the WEEKS_BACK most recent days on or before the origin sharing the target's weekday
    first_back = target - 7 * np.ceil(horizons / 7).astype(np.int64)
    back = first_back[:, None] - 7 * np.arange(WEEKS_BACK)[None, :]
    valid = back >= 0
    vals = np.where(valid, y[np.clip(back, 0, None)], np.nan)
    counts = valid.sum(axis=1)
    sums = np.nansum(vals, axis=1)
    level_28 = trailing_mean(LEVEL_DAYS)
    same_dow_mean = np.where(counts > 0, sums / np.maximum(counts, 1), level_28)
    same_dow_last = np.where(valid[:, 0], vals[:, 0], level_28)

    dates = start + pd.to_timedelta(target, unit="D")
    idx = pd.DatetimeIndex(dates)
    dom = idx.day.to_numpy()
    days_in_month = idx.days_in_month.to_numpy()
    # last month's value on the same day of month, when it is already known at the origin
    month_back = pd.DatetimeIndex(idx - pd.DateOffset(months=1))
    mb = ((month_back - start) // pd.Timedelta(days=1)).to_numpy().astype(np.int64)
    mb_known = (mb >= 0) & (mb <= origins)
    same_dom = np.where(mb_known, y[np.clip(mb, 0, max(y.size - 1, 0))], level_28)

    return np.column_stack(
        [
            horizons,
            idx.day_of_week.to_numpy(),
            dom,
            days_in_month - dom,
            dom == 1,
            dom == days_in_month,
            level_28,
            trailing_mean(7),
            same_dow_mean - level_28,
            same_dow_last - level_28,
            same_dom - level_28,
        ]
    ).astype(np.float64)


def _training_pairs(n_days: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (origin, horizon) pair whose target lies inside a series of ``n_days`` days."""
    min_history = 7 if n_days > 7 + horizon else 1
    origins = np.arange(min_history - 1, n_days - 1)
    o = np.repeat(origins, horizon)
    h = np.tile(np.arange(1, horizon + 1), origins.size)
    keep = o + h < n_days
    return o[keep], h[keep]


def _regressor(seed: int, n_samples: int) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(
        loss="absolute_error",
        learning_rate=0.1,
        max_iter=120,
        max_leaf_nodes=15,
        min_samples_leaf=max(5, min(40, n_samples // 50)),
        l2_regularization=1.0,
        categorical_features=_CATEGORICAL,
        early_stopping=False,
        random_state=seed,
    )


class CashflowSpec(ModelSpec):
    """Daily net cash flow for the next ``settings.forecast_horizon_days`` days."""

    name: ClassVar[str] = "cashflow"
    task: ClassVar[Literal["forecast"]] = "forecast"
    primary_metric: ClassVar[str] = "mae"
    direction: ClassVar[Literal["min"]] = "min"
    description: ClassVar[str] = (
        "Forecasts the daily net cash flow (income minus expenses, days without transactions "
        "count as 0) for the next 30 days, with a 90% interval."
    )

    @property
    def horizon(self) -> int:
        return int(self.settings.forecast_horizon_days)

    def select(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Every transaction with a date and an amount (income and expenses both move cash)."""
        dates = pd.to_datetime(frame["date"], errors="coerce")
        amounts = pd.to_numeric(frame["amount"], errors="coerce")
        keep = dates.notna().to_numpy() & np.isfinite(amounts.to_numpy(dtype=np.float64))
        return frame[keep]

    def split(
        self, frame: pd.DataFrame, test_fraction: float = 0.2
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The last ``horizon`` days of the daily series are the test period.

        A history shorter than three horizons keeps its last quarter (at least one day) as
        test, so a small export still trains; ``test_fraction`` is not used.
        """
        frame = self.select(frame)
        series = daily_net(frame)
        if series.size < 2:
            raise TrainingError(
                f"cashflow: transactions on {series.size} day(s) only; "
                "provide at least two days of history"
            )
        n_test = self.horizon if series.size >= 3 * self.horizon else max(1, series.size // 4)
        cut = series.index[-n_test]
        dates = pd.to_datetime(frame["date"]).dt.normalize()
        ordered = frame.assign(_d=dates).sort_values("_d", kind="stable")
        train = ordered[ordered["_d"] < cut].drop(columns="_d")
        test = ordered[ordered["_d"] >= cut].drop(columns="_d")
        return train, test

    def fit(self, train: pd.DataFrame, seed: int) -> TrainedModel:
        series = daily_net(self.select(train))
        if series.size == 0:
            raise TrainingError(
                "cashflow: no transaction with a valid date and amount to learn from; "
                "check the Date and Amount columns"
            )
        y = series.to_numpy()
        start = series.index[0]
        warnings: list[str] = []
        origins, horizons = _training_pairs(y.size, self.horizon)
        state: dict[str, Any] = {
            "kind": "gbm",
            "horizon": self.horizon,
            "start": start,
            "tail": series.iloc[-TAIL_DAYS:],
            "weekday_profile": _weekday_profile(series),
        }
        if origins.size < MIN_SAMPLES:
            warnings.append(
                f"cashflow: only {y.size} days of history ({origins.size} training pairs); "
                "forecasting each weekday's average instead of a learned model"
            )
            state["kind"] = "profile"
            resid = y - state["weekday_profile"][series.index.day_of_week.to_numpy()]
        else:
            x = _features(y, start, origins, horizons)
            target = y[origins + horizons] - x[:, FEATURE_NAMES.index("level_28")]
            # a few thousand rows: threads only add overhead (and stall on a busy machine)
            with threadpool_limits(limits=1, user_api="openmp"):
                resid = self._holdout_residuals(x, target, origins, horizons, seed)
                model = _regressor(seed, x.shape[0]).fit(x, target)
            if resid.size < 10:
                warnings.append(
                    "cashflow: too little history for an out-of-sample interval; "
                    "the interval uses in-sample residuals and is likely too narrow"
                )
            state["regressor"] = model
            if resid.size < 10:
                resid = target - model.predict(x)
        alpha = (1.0 - INTERVAL_COVERAGE) / 2.0
        lo, hi = np.quantile(resid, [alpha, 1 - alpha]) if resid.size else (0.0, 0.0)
        state["interval"] = (float(lo), float(hi))
        return TrainedModel(
            spec_name=self.name,
            state=state,
            params={
                "estimator": "HistGradientBoostingRegressor"
                if state["kind"] == "gbm"
                else "weekday_profile",
                "horizon_days": self.horizon,
                "level_days": LEVEL_DAYS,
                "interval_coverage": INTERVAL_COVERAGE,
                "training_days": int(y.size),
                "training_pairs": int(origins.size),
                "seed": seed,
            },
            warnings=warnings,
        )

    def _holdout_residuals(
        self,
        x: np.ndarray,
        target: np.ndarray,
        origins: np.ndarray,
        horizons: np.ndarray,
        seed: int,
    ) -> np.ndarray:
        """Residuals of a model fit on the first 75% of days, on origins after that."""
        cut = int(np.quantile(origins + horizons, 0.75))
        fit_rows = origins + horizons < cut
        eval_rows = origins >= cut
        if fit_rows.sum() < MIN_SAMPLES or eval_rows.sum() == 0:
            return np.array([])
        model = _regressor(seed, int(fit_rows.sum())).fit(x[fit_rows], target[fit_rows])
        return np.asarray(target[eval_rows] - model.predict(x[eval_rows]))

    def forecast(self, model: TrainedModel, history: pd.Series, days: int) -> pd.DataFrame:
        """``days`` daily forecasts after the end of the daily ``history`` series."""
        state = model.state
        if not isinstance(state, dict) or "kind" not in state:
            raise NotFittedError("cashflow: the model is not fitted; train it first")
        if history.size == 0:
            history = state["tail"]
        y = history.to_numpy(dtype=np.float64)
        start = history.index[0]
        horizons = np.arange(1, days + 1)
        dates = history.index[-1] + pd.to_timedelta(horizons, unit="D")
        if state["kind"] == "profile":
            pred = state["weekday_profile"][dates.day_of_week.to_numpy()]
        else:
            origins = np.full(days, y.size - 1)
            x = _features(y, start, origins, horizons)
            pred = state["regressor"].predict(x) + x[:, FEATURE_NAMES.index("level_28")]
        lo, hi = state["interval"]
        return pd.DataFrame(
            {"date": dates, "prediction": pred, "lower": pred + lo, "upper": pred + hi}
        )

    def predict(self, model: TrainedModel, frame: pd.DataFrame) -> pd.DataFrame:
        """Forecast the ``horizon`` days after the last day of ``frame`` (transaction history).

        A frame without any dated transaction with an amount (e.g. empty) forecasts from the
        end of the training period. The horizon is the one the model was trained for. The
        result has one row per future day: ``date``, ``prediction``, ``lower``, ``upper``.
        """
        missing = {"date", "amount"} - set(frame.columns)
        if missing:
            raise InputError(
                f"cashflow: history lacks column(s) {', '.join(sorted(missing))}; "
                "send transactions with date and amount"
            )
        horizon = int(model.state.get("horizon", self.horizon))
        return self.forecast(model, daily_net(self.select(frame)), horizon)

    def _actual_and_forecast(
        self, model: TrainedModel, test: pd.DataFrame
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Test-period actuals (zero-filled from the day after training) and both forecasts."""
        tail: pd.Series = model.state["tail"]
        origin = tail.index[-1]
        actual = daily_net(self.select(test))
        actual = actual[actual.index > origin]
        if actual.size == 0:
            return np.array([]), np.array([]), np.array([])
        days = pd.date_range(origin + pd.Timedelta(days=1), actual.index[-1], freq="D")
        actual = actual.reindex(days, fill_value=0.0)
        pred = self.forecast(model, tail, days.size)["prediction"].to_numpy()
        naive = seasonal_naive(tail.to_numpy(), days.size)
        return actual.to_numpy(), pred, naive

    def evaluate(self, model: TrainedModel, test: pd.DataFrame) -> dict[str, float]:
        actual, pred, _ = self._actual_and_forecast(model, test)
        lo, hi = model.state["interval"]
        inside = (actual >= pred + lo) & (actual <= pred + hi)
        return {
            "mae": metrics.mae(actual, pred),
            "smape": metrics.smape(actual, pred),
            "interval_coverage": float(inside.mean()) if actual.size else math.nan,
            "horizon_days": float(actual.size),
        }

    def baseline(self, train: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
        """Seasonal naive: the last training week repeated over the test period."""
        series = daily_net(self.select(train))
        actual = daily_net(self.select(test))
        if series.size == 0 or actual.size == 0:
            return {"mae": math.nan, "smape": math.nan}
        origin = series.index[-1]
        actual = actual[actual.index > origin]
        if actual.size == 0:
            return {"mae": math.nan, "smape": math.nan}
        days = pd.date_range(origin + pd.Timedelta(days=1), actual.index[-1], freq="D")
        actual = actual.reindex(days, fill_value=0.0)
        naive = seasonal_naive(series.to_numpy(), days.size)
        return {
            "mae": metrics.mae(actual.to_numpy(), naive),
            "smape": metrics.smape(actual.to_numpy(), naive),
        }


def _weekday_profile(series: pd.Series) -> np.ndarray:
    """Mean net flow per weekday (Monday=0); weekdays never seen take the overall mean."""
    overall = float(series.mean()) if series.size else 0.0
    means = series.groupby(series.index.day_of_week).mean()
    return means.reindex(range(7), fill_value=overall).to_numpy(dtype=np.float64)


SPEC = CashflowSpec
