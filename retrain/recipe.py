"""A model's training recipe: the unfitted challenger, built from the configuration.

The estimator is fitted on a ``DataFrame`` holding the model's feature columns in configuration
order (numeric ``float64`` with ``NaN``, categorical strings with ``NaN`` for missing), and the
labels (class labels as strings, the same text as the events' ``label_key``; regression targets
as floats). With ``preprocess: auto`` a plain estimator gets a standard preprocessing in front
of it, so every scikit-learn estimator works on mixed feature types.

>>> from driftloop.core.config.retrain import RecipeConfig
>>> est = build_estimator(RecipeConfig(estimator="sklearn.linear_model.LogisticRegression",
...                                    params={"C": 0.5}),
...                       "classification", {"x": "numeric", "c": "categorical"})
>>> [name for name, _ in est.steps], est.named_steps["model"].C
(['preprocess', 'model'], 0.5)
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftloop.core.config.retrain import RecipeConfig, import_object

__all__ = ["RecipeError", "build_estimator", "estimator_name", "preprocessor"]


class RecipeError(RuntimeError):
    """The recipe could not produce an estimator (bad factory, wrong object returned)."""


def preprocessor(features: Mapping[str, str], max_categories: int = 32) -> Any:
    """Median imputation for numeric features; constant fill + one-hot for categorical ones."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    numeric = [f for f, t in features.items() if t == "numeric"]
    categorical = [f for f, t in features.items() if t == "categorical"]
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        parts.append(("numeric", SimpleImputer(strategy="median", keep_empty_features=True), numeric))
    if categorical:
        parts.append(("categorical", Pipeline([
            ("fill", SimpleImputer(strategy="constant", fill_value="__missing__", keep_empty_features=True)),
            ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=max_categories,
                                     sparse_output=False)),
        ]), categorical))
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)


def _seed(est: Any, seed: int) -> None:
    """Set every unset ``random_state`` in the estimator (and its steps) to ``seed``."""
    try:
        params = est.get_params(deep=True)
    except Exception:  # noqa: BLE001 - not a scikit-learn estimator: leave it alone
        return
    fixed = {k: seed for k, v in params.items() if (k == "random_state" or k.endswith("__random_state")) and v is None}
    if fixed:
        est.set_params(**fixed)


def build_estimator(recipe: RecipeConfig, task: str, features: Mapping[str, str]) -> Any:
    """A new, unfitted estimator for one training run."""
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    if recipe.factory:
        fn = import_object(recipe.factory)
        try:
            est = fn(**recipe.params)
        except Exception as exc:  # the user's code: report it as the recipe's failure
            raise RecipeError(f"recipe factory {recipe.factory} failed: {type(exc).__name__}: {exc}") from exc
        if not hasattr(est, "fit") or not hasattr(est, "predict"):
            raise RecipeError(f"recipe factory {recipe.factory} returned {type(est).__name__}, "
                              "not an estimator with fit/predict")
        try:
            est = clone(est)    # make sure it is unfitted
        except Exception:  # noqa: BLE001 - not clonable: use as returned
            pass
    else:
        klass = import_object(recipe.estimator_path(task))
        est = klass(**recipe.params)
    _seed(est, recipe.seed)
    if recipe.preprocess == "auto" and task != "ranking" and not isinstance(est, Pipeline):
        # (a ranker reads the raw request features: one-hot columns would hide its segments)
        est = Pipeline([("preprocess", preprocessor(features, recipe.max_categories)), ("model", est)])
    return est


def estimator_name(est: Any) -> str:
    """Import path of the estimator's class (the last step of a pipeline).

    >>> from sklearn.linear_model import Ridge
    >>> estimator_name(Ridge())
    'sklearn.linear_model._ridge.Ridge'
    """
    from sklearn.pipeline import Pipeline

    final = est.steps[-1][1] if isinstance(est, Pipeline) else est
    return f"{type(final).__module__}.{type(final).__qualname__}"
