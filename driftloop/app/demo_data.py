"""The demo's data: River's Agrawal loan-approval generator (no download), with a drift.

Nine applicant attributes (salary, commission, age, education level, car make, zip code,
house value, years owned, loan amount) and a label "loan approved". Before the drift the labels
follow Agrawal's concept function 0; after it, function 2, and salaries shift up by 30% (so
both the data and the concept drift: the incumbent model's error rate rises).

>>> X, y = agrawal_frame(5, concept=0, seed=1)
>>> list(X.columns)[:4], len(y)
(['salary', 'commission', 'age', 'elevel'], 5)
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FEATURES", "agrawal_frame", "train_model"]

FEATURES = {
    "salary": "numeric", "commission": "numeric", "age": "numeric", "elevel": "categorical",
    "car": "categorical", "zipcode": "categorical", "hvalue": "numeric", "hyears": "numeric", "loan": "numeric",
}
CATEGORICAL = [k for k, v in FEATURES.items() if v == "categorical"]


def agrawal_frame(n: int, *, concept: int, seed: int, salary_shift: float = 1.0, perturbation: float = 0.05) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` rows of Agrawal's generator for one concept function (0-9)."""
    from river.datasets import synth

    rows, labels = [], []
    gen = synth.Agrawal(classification_function=concept, seed=seed, perturbation=perturbation)
    for x, y in gen.take(n):
        rows.append(x)
        labels.append(int(y))
    df = pd.DataFrame(rows, columns=list(FEATURES))
    df["salary"] = df["salary"] * salary_shift
    for c in CATEGORICAL:
        df[c] = df[c].astype(str)
    return df, np.asarray(labels)


def make_estimator(**params: Any) -> Any:
    """One-hot for the categorical columns, then gradient-boosted trees."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    pre = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), CATEGORICAL)], remainder="passthrough")
    return Pipeline([("pre", pre), ("clf", HistGradientBoostingClassifier(random_state=0, **params))])


def train_model(X: pd.DataFrame, y: np.ndarray) -> Any:
    model = make_estimator(max_iter=150)
    model.fit(X, y)
    return model


def reference_frame(model: Any, X: pd.DataFrame, y: np.ndarray) -> pd.DataFrame:
    """Held-out rows with the label and the model's outputs (prediction, score_<class>)."""
    ref = X.copy()
    ref["label"] = y
    proba = model.predict_proba(X)
    ref["prediction"] = model.classes_[proba.argmax(axis=1)]
    for j, c in enumerate(model.classes_):
        ref[f"score_{c}"] = proba[:, j]
    return ref
