"""fastmlp.MLPRegressor, multilabel MLPClassifier, sample_weight and class_weight, on real
data: scikit-learn's bundled datasets (diabetes for regression; digits, as three 0/1 labels
per image, for multilabel). Nothing is downloaded."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_diabetes, load_digits
from sklearn.dummy import DummyRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import mean_poisson_deviance, recall_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastmlp import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# a regressor that fits diabetes in well under a second
DIABETES_NET = dict(hidden_layer_sizes=(32,), learning_rate_init=0.05, batch_size=32,
                    early_stopping=True, n_iter_no_change=5, max_iter=300, random_state=0)
FOLDS = KFold(5, shuffle=True, random_state=0)


@pytest.fixture(scope="module")
def diabetes():
    """442 patients: 10 features, a disease-progression number (25 .. 346) to predict."""
    return load_diabetes(return_X_y=True)


@pytest.fixture(scope="module")
def digit_labels():
    """1,797 8x8 digits as features in [0, 1] and three 0/1 labels each: even, > 4, prime."""
    x, digits = load_digits(return_X_y=True)
    labels = np.c_[digits % 2 == 0, digits > 4, np.isin(digits, (2, 3, 5, 7))].astype(np.int64)
    return x / 16, labels, digits


# ----------------------------------------------------------------------------- regression

def test_regressor_beats_predicting_the_mean_on_held_out_diabetes_rows(diabetes):
    x, y = diabetes
    pipeline = make_pipeline(StandardScaler(), MLPRegressor(**DIABETES_NET))
    scores = cross_val_score(pipeline, x, y, cv=FOLDS)  # R^2 on each fold's held-out rows
    mean_only = cross_val_score(DummyRegressor(), x, y, cv=FOLDS)
    assert mean_only.max() <= 0 < 0.2 < scores.min()
    assert scores.mean() > 0.3

    model = pipeline.fit(x, y)[-1]
    predictions = pipeline.predict(x)
    assert predictions.shape == (442,) and predictions.dtype == np.float64
    assert model.n_outputs_ == 1 and model.out_activation_ == "identity"
    assert [w.shape for w in model.coefs_] == [(10, 32), (32, 1)]
    assert model.n_iter_ == len(model.loss_curve_) == len(model.validation_scores_) < 300
    assert model.best_validation_score_ == max(model.validation_scores_) > 0.2  # R^2
    assert model.best_loss_ is None  # as scikit-learn's, with early_stopping
    assert model.t_ == model.n_iter_ * (442 - 45)  # the training rows seen: 10 % held out
    again = pickle.loads(pickle.dumps(pipeline))
    np.testing.assert_array_equal(again.predict(x), predictions)


def test_transformed_target_regressor_learns_standardised_targets(diabetes):
    x, y = diabetes
    inner = MLPRegressor(**{**DIABETES_NET, "learning_rate_init": 0.01})
    model = make_pipeline(StandardScaler(),
                          TransformedTargetRegressor(inner, transformer=StandardScaler()))
    assert cross_val_score(model, x, y, cv=FOLDS).mean() > 0.3
    model.fit(x, y)
    fitted = model[-1]
    scaled = fitted.regressor_.predict(model[0].transform(x))
    assert abs(scaled.mean()) < 0.3 and 0.3 < scaled.std() < 1.2  # learnt in standard units
    np.testing.assert_allclose(model.predict(x), fitted.transformer_.inverse_transform(
        scaled.reshape(-1, 1)).ravel())
    assert 100 < model.predict(x).mean() < 200  # back in the data's units


def test_grid_search_picks_a_regressor_pipeline(diabetes):
    x, y = diabetes
    search = GridSearchCV(make_pipeline(StandardScaler(), MLPRegressor(**DIABETES_NET)),
                          {"mlpregressor__hidden_layer_sizes": [(8,), (32,)],
                           "mlpregressor__alpha": [1e-4, 1.0]}, cv=3)
    search.fit(x[:300], y[:300])
    assert len(search.cv_results_["params"]) == 4
    assert search.best_score_ > 0.3
    assert search.score(x[300:], y[300:]) > 0.3  # R^2 on rows no fit saw


def test_multi_output_targets_and_one_target_as_a_column(diabetes):
    x, y = diabetes
    x = StandardScaler().fit_transform(x)
    settings = dict(DIABETES_NET, early_stopping=False, max_iter=30)
    two = MLPRegressor(**settings).fit(x, np.c_[y, np.log(y)])
    assert two.predict(x).shape == (442, 2) and two.n_outputs_ == 2
    assert two.coefs_[-1].shape == (32, 2)
    assert two.predict(x.astype(np.float32)).dtype == np.float32  # X's float dtype
    # a 1-D y and a one-column y train alike; both predict 1-D, as scikit-learn's
    flat = MLPRegressor(**settings).fit(x, y).predict(x)
    column = MLPRegressor(**settings).fit(x, y[:, None]).predict(x)
    assert flat.shape == column.shape == (442,)
    np.testing.assert_array_equal(flat, column)


def test_partial_fit_one_epoch_a_call(diabetes):
    x, y = diabetes
    x = StandardScaler().fit_transform(x)
    model = MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.05, batch_size=32,
                         random_state=0)
    for _ in range(30):
        model.partial_fit(x[:300], y[:300])
    assert model.n_iter_ == 30 and model.score(x[300:], y[300:]) > 0.2
    with pytest.raises(ValueError, match="2 targets"):
        model.partial_fit(x[:10], np.c_[y[:10], y[:10]])


def test_poisson_regression_predicts_positive_means(diabetes):
    """Counts drawn around exp(a linear function of two diabetes features): the poisson loss
    (log link) learns their mean, far better than the overall mean does."""
    x, _ = diabetes
    x = StandardScaler().fit_transform(x)
    mean = np.exp(1.0 + 0.6 * x[:, 2] + 0.4 * x[:, 8])
    counts = np.random.default_rng(0).poisson(mean).astype(np.float64)
    x_train, x_test, y_train, y_test = train_test_split(x, counts, random_state=0)
    model = MLPRegressor(hidden_layer_sizes=(16,), loss="poisson", learning_rate_init=0.01,
                         max_iter=500, random_state=0).fit(x_train, y_train)
    assert model.out_activation_ == "exp"
    predicted = model.predict(x_test)
    assert predicted.min() > 0
    constant = mean_poisson_deviance(y_test, np.full_like(y_test, y_train.mean()))
    assert mean_poisson_deviance(y_test, predicted) < 0.7 * constant
    # exp of the network's output layer, from its coefs_ and intercepts_
    (w0, w1), (b0, b1) = model.coefs_, model.intercepts_
    hidden = np.maximum(x_test @ w0.astype(np.float64) + b0, 0)
    np.testing.assert_allclose(predicted, np.exp(hidden @ w1 + b1).ravel(), rtol=1e-5)


def test_regressor_fit_runs_the_compiled_epoch(diabetes, monkeypatch):
    from fastmlp import engine

    calls = []
    real = engine.run_epoch

    def spy(state, layout, x, y, order, batch_size, config, *args, **kwargs):
        calls.append((layout.sizes, x.dtype, y.shape, batch_size, config.task, config.loss,
                      config.huber_delta, config.optimizer))
        return real(state, layout, x, y, order, batch_size, config, *args, **kwargs)

    monkeypatch.setattr(engine, "run_epoch", spy)
    x, y = diabetes
    MLPRegressor(hidden_layer_sizes=(12,), solver="sgd", activation="tanh", loss="huber",
                 huber_delta=30.0, batch_size=64, learning_rate_init=1e-3,
                 max_iter=3).fit(StandardScaler().fit_transform(x), y)
    assert calls == [((10, 12, 1), np.float32, (442, 1), 64, "regression", "huber", 30.0,
                      "nag")] * 3


# ----------------------------------------------------------------------------- multilabel

def test_multilabel_fit_predict_round_trip(digit_labels):
    x, labels, _ = digit_labels
    x_train, x_test, y_train, y_test = train_test_split(x, labels, random_state=0)
    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=50, learning_rate_init=0.01,
                          random_state=0).fit(x_train, y_train)
    assert list(model.classes_) == [0, 1, 2]  # as scikit-learn's, for an indicator matrix
    assert model.n_outputs_ == 3 and model.out_activation_ == "logistic"
    assert model.coefs_[-1].shape == (64, 3)
    predicted = model.predict(x_test)
    assert predicted.shape == y_test.shape and predicted.dtype == y_test.dtype
    assert set(np.unique(predicted)) <= {0, 1}
    probabilities = model.predict_proba(x_test)
    assert probabilities.shape == (len(x_test), 3) and probabilities.dtype == np.float32
    assert ((probabilities >= 0) & (probabilities <= 1)).all()  # float32: 1 when sure
    np.testing.assert_array_equal(predicted, probabilities > 0.5)
    assert model.score(x_test, y_test) > 0.85  # every label of a digit right
    assert ((predicted == y_test).mean(axis=0) > 0.9).all()
    # lists of lists are the same y; a pickled model predicts the same
    as_lists = MLPClassifier(**model.get_params()).fit(x_train, y_train.tolist())
    np.testing.assert_array_equal(as_lists.predict(x_test), predicted)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).predict(x_test), predicted)
    # partial_fit: classes are the labels' columns
    online = MLPClassifier(hidden_layer_sizes=(64,), learning_rate_init=0.01, random_state=0)
    for _ in range(20):
        online.partial_fit(x_train, y_train, classes=[0, 1, 2])
    assert online.score(x_test, y_test) > 0.8


def test_multilabel_in_a_pipeline_and_grid_search(digit_labels):
    x, labels, _ = digit_labels
    search = GridSearchCV(make_pipeline(StandardScaler(), MLPClassifier(
        hidden_layer_sizes=(32,), max_iter=20, learning_rate_init=0.01, random_state=0)),
        {"mlpclassifier__alpha": [1e-4, 1e-1]}, cv=2)
    search.fit(x[:1200], labels[:1200])
    assert len(search.cv_results_["params"]) == 2 and search.best_score_ > 0.75
    assert search.predict(x[1200:]).shape == (597, 3)
    assert search.score(x[1200:], labels[1200:]) > 0.75


def test_multilabel_fit_runs_the_compiled_epoch(digit_labels, monkeypatch):
    from fastmlp import engine

    calls = []
    real = engine.run_epoch

    def spy(state, layout, x, y, order, batch_size, config, *args, **kwargs):
        calls.append((layout.sizes, y.shape, config.task, config.loss))
        return real(state, layout, x, y, order, batch_size, config, *args, **kwargs)

    monkeypatch.setattr(engine, "run_epoch", spy)
    x, labels, _ = digit_labels
    MLPClassifier(hidden_layer_sizes=(16,), max_iter=2).fit(x, labels)
    assert calls == [((64, 16, 3), (1797, 3), "multilabel", "binary_cross_entropy")] * 2


# ----------------------------------------------------------------------------- weights

def _weighted_and_repeated(estimator, x, y, weights):
    """(the estimator fitted with integer sample weights, a clone fitted on each row repeated
    that many times)."""
    weighted = estimator.__class__(**estimator.get_params()).fit(x, y, sample_weight=weights)
    repeated = estimator.__class__(**estimator.get_params()).fit(
        np.repeat(x, weights, axis=0), np.repeat(y, weights, axis=0))
    return weighted, repeated


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_weight_two_is_the_row_given_twice_in_one_full_batch(kind, diabetes, digit_labels):
    """One batch of every row (batch_size "auto" covers up to 200), float64, shuffle=False:
    the weighted fit and the fit on repeated rows end with the same coefficients; in fact,
    bit for bit, in float32 and with shuffle=True too (the rows are taken merged and in a
    canonical order)."""
    if kind == "regressor":
        x, y = diabetes
        x, y = StandardScaler().fit_transform(x)[:80], y[:80]
        estimator = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.05,
                                 max_iter=40, random_state=0)
    else:
        x, _, y = digit_labels
        x, y = x[:80], y[:80]
        estimator = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01,
                                  max_iter=40, random_state=0)
    weights = np.random.default_rng(1).integers(0, 3, len(y))  # 0, 1 or 2
    assert (weights == 2).any() and (weights == 0).any() and weights.sum() <= 200
    estimator.set_params(dtype="float64", shuffle=False)
    weighted, repeated = _weighted_and_repeated(estimator, x, y, weights)
    assert weighted.n_iter_ == repeated.n_iter_
    for a, b in zip(weighted.coefs_ + weighted.intercepts_,
                    repeated.coefs_ + repeated.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    estimator.set_params(dtype="float32", shuffle=True)
    weighted, repeated = _weighted_and_repeated(estimator, x, y, weights)
    for a, b in zip(weighted.coefs_, repeated.coefs_):
        np.testing.assert_array_equal(a, b)
    # and the weights matter: the unweighted fit is another model
    plain = estimator.__class__(**estimator.get_params()).fit(x, y)
    assert not np.array_equal(plain.coefs_[0], weighted.coefs_[0])


def test_early_stopping_holds_out_a_weighted_row_as_its_copies(diabetes):
    """With early_stopping, rows equal in X and y are held out or trained on together, with
    their summed weight: integer weights give the model of the repeated rows, bit for bit."""
    x, y = diabetes
    x, y = StandardScaler().fit_transform(x)[:100], y[:100]
    weights = np.random.default_rng(2).integers(0, 3, len(y))
    estimator = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.05,
                             early_stopping=True, validation_fraction=0.2, max_iter=60,
                             random_state=0)
    weighted, repeated = _weighted_and_repeated(estimator, x, y, weights)
    assert weighted.validation_scores_ == repeated.validation_scores_
    np.testing.assert_array_equal(weighted.predict(x), repeated.predict(x))


def test_weight_zero_is_the_row_left_out_at_any_batch_size(digit_labels):
    x, _, digits = digit_labels
    keep = np.random.default_rng(3).random(len(digits)) < 0.7
    settings = dict(hidden_layer_sizes=(16,), batch_size=32, max_iter=3, random_state=0)
    weighted = MLPClassifier(**settings).fit(x, digits, sample_weight=keep.astype(float))
    dropped = MLPClassifier(**settings).fit(x[keep], digits[keep])
    for a, b in zip(weighted.coefs_, dropped.coefs_):
        np.testing.assert_array_equal(a, b)
    # in partial_fit too
    online = MLPClassifier(**settings).partial_fit(x, digits, classes=np.arange(10),
                                                   sample_weight=keep * 1.0)
    online_dropped = MLPClassifier(**settings).partial_fit(x[keep], digits[keep],
                                                           classes=np.arange(10))
    np.testing.assert_array_equal(online.coefs_[0], online_dropped.coefs_[0])
    # a class that only rows of weight 0 hold is not one of classes_, as if left out
    only_some = MLPClassifier(**settings).fit(x, digits, sample_weight=(digits < 9) * 1.0)
    assert list(only_some.classes_) == list(range(9))


def test_class_weight_balanced_equals_the_explicit_weights(digit_labels):
    """"balanced" weighs each row by n_samples / (n_classes * its class's count): the same
    model as those weights given as sample_weight, and on a 1-in-10 label it finds more of
    the rare class than no weights do."""
    x, _, digits = digit_labels
    is_zero = (digits == 0).astype(np.int64)  # 178 of 1,797
    settings = dict(hidden_layer_sizes=(16,), max_iter=10, random_state=0, dtype="float64")
    balanced = MLPClassifier(**settings, class_weight="balanced").fit(x, is_zero)
    counts = np.bincount(is_zero)
    explicit = MLPClassifier(**settings).fit(
        x, is_zero, sample_weight=len(is_zero) / (2 * counts[is_zero]))
    for a, b in zip(balanced.coefs_, explicit.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    mapping = MLPClassifier(**settings, class_weight={0: 1.0, 1: 9.0}).fit(x, is_zero)
    as_weights = MLPClassifier(**settings).fit(x, is_zero, sample_weight=1.0 + 8.0 * is_zero)
    np.testing.assert_array_equal(mapping.coefs_[0], as_weights.coefs_[0])

    x_train, x_test, y_train, y_test = train_test_split(x, is_zero, random_state=0)
    few = dict(settings, max_iter=5)  # an early model: unweighted, it misses rare zeros
    recall = [recall_score(y_test, MLPClassifier(**few, class_weight=weights).fit(
        x_train, y_train).predict(x_test)) for weights in (None, "balanced")]
    assert recall[1] > recall[0] + 0.2


def test_bad_input_is_a_value_error_that_says_what(diabetes, digit_labels):
    x, y = diabetes
    x_digits, labels, digits = digit_labels
    small = dict(hidden_layer_sizes=(4,), max_iter=1)
    nan_y = y.copy()
    nan_y[5] = np.nan
    cases = [
        (lambda: MLPRegressor(**small).fit(x, nan_y), "y contains NaN"),
        (lambda: MLPClassifier(**small).fit(x, np.where(np.arange(442) == 3, np.nan, 1.0)),
         "y contains NaN"),
        (lambda: MLPRegressor(**small, loss="poisson").fit(x, y - 100), "poisson.*y >= 0"),
        (lambda: MLPRegressor(**small).fit(x, y, sample_weight=np.r_[-1.0, np.ones(441)]),
         "sample_weight must be >= 0.*-1 for row 0"),
        (lambda: MLPRegressor(**small).fit(x, y, sample_weight=np.zeros(442)),
         "sample_weight is zero for every row"),
        (lambda: MLPClassifier(**small).fit(x_digits, digits, sample_weight=np.ones(5)),
         "sample_weight"),
        (lambda: MLPClassifier(**small, class_weight={0: 0.0, 1: 0.0}).fit(
            x_digits, digits % 2), "zero for every row"),
        (lambda: MLPClassifier(**small, class_weight="balanced").fit(x_digits, labels),
         "class_weight is not offered for multilabel"),
        (lambda: MLPClassifier(**small, class_weight="balanced").partial_fit(
            x_digits, digits, classes=np.arange(10)), "'balanced' is not offered in partial_fit"),
        (lambda: MLPClassifier(**small).fit(x_digits, np.c_[digits, digits]),
         "multiclass-multioutput"),
        (lambda: MLPClassifier(**small, loss="mean_squared_error").fit(x_digits, labels),
         "loss=mean_squared_error .*multilabel takes binary_cross_entropy"),
        (lambda: MLPRegressor(**small, loss="hinge").fit(x, y),
         "loss='hinge' is not one of squared_error, absolute_error, huber, poisson"),
        (lambda: MLPRegressor(**small, loss="huber", huber_delta=0.0).fit(x, y),
         "huber_delta=0.0"),
        (lambda: MLPRegressor(**small, early_stopping=True).fit(x[:1], y[:1]),
         "early_stopping needs at least 2 distinct samples"),
    ]
    for fit, message in cases:
        with pytest.raises(ValueError, match=message):
            fit()


def test_onnx_graphs_of_a_regressor_and_a_multilabel_classifier(diabetes, digit_labels,
                                                                 tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    x, y = diabetes
    x = StandardScaler().fit_transform(x).astype(np.float32)
    x_digits, labels, _ = digit_labels
    x_digits = x_digits.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        regressor = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5).fit(x, np.c_[y, y / 2])
        multilabel = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5).fit(x_digits, labels)
    for model, rows, outputs, mine in (
            (regressor, x, ["values"], [regressor.predict(x)]),
            (multilabel, x_digits, ["probabilities", "labels"],
             [multilabel.predict_proba(x_digits), multilabel.predict(x_digits)])):
        path = tmp_path / f"{type(model).__name__}.onnx"
        model.to_onnx(path)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for theirs, ours in zip(session.run(outputs, {"input": rows}), mine):
            np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-3)
