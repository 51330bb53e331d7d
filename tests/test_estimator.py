"""fastmlp.MLPClassifier and fastmlp.MLPRegressor: scikit-learn estimators on fastmlp's
compiled epoch.

scikit-learn's own estimator checks run on tiny instances (one hidden layer of 8, 20 epochs:
the checks fit dozens of times) of both estimators: the default settings and, for each,
another solver, activation and loss, early_stopping, and float64. Every check scikit-learn
yields for an instance runs and passes (the sample-weight ones included: fastmlp/estimator.py's
docstring says what holds); none is excluded or expected to fail. One skips itself: the
format of a multilabel decision_function, which, as scikit-learn's MLPs, they do not have.
The regression, multilabel and weight tests on real data are in test_estimator_tasks.py.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmlp import MLPClassifier, MLPRegressor, data

# Checks expected to fail, with the reason: none (every check passes as it is).
EXPECTED_FAILED = {}
# Run apart, not in the parametrized test: scikit-learn runs the array API check only when
# SCIPY_ARRAY_API=1 is set before SciPy is first imported (a process-wide switch; without
# it the check skips), so test_array_api_check runs it in a process of its own.
RUN_APART = {"check_array_api_input"}
# Not for these estimators: scikit-learn generates this check for every multilabel
# classifier and skips it inside when there is no decision_function (its own MLPs have none
# either); a skip must not count as a pass, so it is left out here.
NOT_APPLICABLE = {"check_classifiers_multilabel_output_format_decision_function"}

SMALL = dict(hidden_layer_sizes=(8,), max_iter=20, learning_rate_init=0.01)
CHECK_INSTANCE = MLPClassifier(**SMALL)
CHECK_INSTANCES = [
    CHECK_INSTANCE,
    MLPClassifier(**SMALL, solver="sgd", activation="tanh", loss="mean_squared_error"),
    MLPClassifier(**SMALL, early_stopping=True),
    MLPClassifier(**SMALL, dtype="float64"),
    MLPRegressor(**SMALL),
    MLPRegressor(**SMALL, solver="sgd", activation="tanh", loss="huber"),
    MLPRegressor(**SMALL, early_stopping=True),
    MLPRegressor(**SMALL, dtype="float64"),
]
_CHECKS = parametrize_with_checks(CHECK_INSTANCES,
                                  expected_failed_checks=lambda estimator: EXPECTED_FAILED)


def _check_name(param) -> str:
    check = param.values[1] if hasattr(param, "values") else param[1]
    return getattr(check, "func", check).__name__


def _instance(param):
    return param.values[0] if hasattr(param, "values") else param[0]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(_CHECKS.args[0],
                         [p for p in _CHECKS.args[1]
                          if _check_name(p) not in RUN_APART | NOT_APPLICABLE],
                         **_CHECKS.kwargs)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_every_instance_gets_the_sample_weight_checks():
    """The checks scikit-learn runs on estimators with sample_weight, on every instance (a
    fit(X, y) without it would silently skip them)."""
    wanted = {"check_sample_weight_equivalence_on_dense_data", "check_sample_weights_shape",
              "check_all_zero_sample_weights_error", "check_sample_weights_not_overwritten"}
    for estimator in CHECK_INSTANCES:
        names = {_check_name(p) for p in _CHECKS.args[1] if _instance(p) is estimator}
        assert wanted <= names, (estimator, wanted - names)
    multilabel = {"check_classifiers_multilabel_output_format_predict_proba"}
    assert multilabel <= {_check_name(p) for p in _CHECKS.args[1]
                          if _instance(p) is CHECK_INSTANCE}


def test_the_left_out_checks_do_not_apply():
    assert not any(hasattr(estimator, "decision_function") for estimator in CHECK_INSTANCES)


def test_array_api_check():
    """The array API check of every instance, in one process with SCIPY_ARRAY_API=1."""
    assert RUN_APART <= {_check_name(p) for p in _CHECKS.args[1]}
    code = """if True:
        import sys, warnings
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.utils.estimator_checks import estimator_checks_generator
        from fastmlp import MLPClassifier, MLPRegressor
        warnings.simplefilter("ignore", ConvergenceWarning)
        ran = 0
        for text in sys.argv[1:]:
            estimator = eval(text)
            for instance, check in estimator_checks_generator(estimator, legacy=True):
                if getattr(check, "func", check).__name__ == "check_array_api_input":
                    check(instance)
                    ran += 1
        assert ran == len(sys.argv) - 1, ran
    """
    env = dict(os.environ, SCIPY_ARRAY_API="1")
    done = subprocess.run([sys.executable, "-c", code, *map(repr, CHECK_INSTANCES)], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


# ----------------------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def fashion(small_fashion):
    """(x_train, y_train, x_test, y_test): 2,000 / 500 Fashion-MNIST images as float
    features in [0, 1] and the class names as labels (strings)."""
    names = np.array(data.REGISTRY["fashion_mnist"].class_names)
    arrays = {key: data.read_idx(small_fashion / name.removesuffix(".gz"))
              for key, name in data.FILES.items()}
    x_train = arrays["x_train"].reshape(2000, -1) / 255.0
    x_test = arrays["x_test"].reshape(500, -1) / 255.0
    return x_train, names[arrays["y_train"]], x_test, names[arrays["y_test"]]


def test_fit_predict_on_fashion_mnist_with_string_labels(fashion):
    x_train, y_train, x_test, y_test = fashion
    model = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=15, batch_size=32,
                          random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    assert list(model.classes_) == sorted(data.REGISTRY["fashion_mnist"].class_names)
    assert model.n_features_in_ == 784 and model.n_iter_ == len(model.loss_curve_)
    assert model.loss_curve_[-1] < model.loss_curve_[0]
    assert model.score(x_test, y_test) > 0.75
    probabilities = model.predict_proba(x_test)
    assert probabilities.shape == (500, 10)
    assert probabilities.dtype == np.float32  # the model's dtype (float64 X, float32 model)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert set(model.predict(x_test)) <= set(y_test)
    assert [w.shape for w in model.coefs_] == [(784, 64), (64, 64), (64, 10)]

    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(x_test), probabilities)


def test_same_seed_same_model_and_warm_start_continues(fashion):
    x_train, y_train, _, _ = fashion
    settings = dict(hidden_layer_sizes=(16,), max_iter=2, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        first = MLPClassifier(**settings).fit(x_train, y_train)
        second = MLPClassifier(**settings).fit(x_train, y_train)
        np.testing.assert_array_equal(first.coefs_[0], second.coefs_[0])
        warm = MLPClassifier(**settings, warm_start=True).fit(x_train, y_train)
        warm.fit(x_train, y_train)
    assert warm.n_iter_ == 4 and len(warm.loss_curve_) == 4


def test_fit_reads_the_callers_float32_array_without_copying_or_changing_it(fashion):
    """A float32 C-ordered X is trained on as it is: fit allocates far less than X (a copy of
    Fashion-MNIST's training set took 0.5 s and 170 MB per fit) and leaves X as it was."""
    import tracemalloc

    x_train, y_train, _, _ = fashion
    x = np.ascontiguousarray(x_train, dtype=np.float32)
    before = x.copy()
    model = MLPClassifier(hidden_layer_sizes=(16,), max_iter=1, random_state=0)
    model.partial_fit(x[:10], y_train[:10], classes=np.unique(y_train))  # compile outside
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, y_train)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes / 4, f"fit allocated {peak:,} bytes for a {x.nbytes:,}-byte X"
    np.testing.assert_array_equal(x, before)


def test_predictions_come_in_the_models_dtype_from_the_compiled_forward_pass(fashion):
    """predict_proba is the compiled forward pass of `fastmlp predict`, in the model's dtype
    (float32 by default, as scikit-learn's MLPClassifier keeps float32 X): a float32 and a
    float64 X give the same classes and probabilities within 1e-5, and match the NumPy
    twin of that forward pass."""
    from fastmlp import reference

    x_train, y_train, x_test, _ = fashion
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=3, random_state=0).fit(
            x_train, y_train)
    as64 = model.predict_proba(x_test.astype(np.float64))
    as32 = model.predict_proba(x_test.astype(np.float32))
    assert as64.dtype == as32.dtype == np.float32
    np.testing.assert_allclose(as32, as64, atol=1e-5)
    twin, _ = reference.predict([(w.astype(np.float64), b.astype(np.float64))
                                 for w, b in zip(model.coefs_, model.intercepts_)],
                                x_test, "ReLU")
    np.testing.assert_allclose(as32, twin, atol=1e-5)
    np.testing.assert_array_equal(model.predict(x_test.astype(np.float32)),
                                  model.predict(x_test.astype(np.float64)))
    float64_model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=1, random_state=0,
                                  dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        float64_model.fit(x_train, y_train)
    as64 = float64_model.predict_proba(x_test.astype(np.float32))
    assert as64.dtype == np.float64
    twin, _ = reference.predict(list(zip(float64_model.coefs_, float64_model.intercepts_)),
                                x_test.astype(np.float32).astype(np.float64), "ReLU")
    np.testing.assert_allclose(as64, twin, rtol=1e-10)


@pytest.mark.parametrize("activation,fastmlp_name", [("gelu", "GELU"), ("silu", "SiLU"),
                                                     ("leaky_relu", "LeakyReLU")])
def test_activations_scikit_learn_lacks_go_by_lower_case_names(fashion, activation,
                                                               fastmlp_name):
    """gelu, silu and leaky_relu (with leaky_slope) train fastmlp's GELU, SiLU and
    LeakyReLU: the fitted network's probabilities are the NumPy twin's for that activation
    and slope."""
    from fastmlp import reference

    x_train, y_train, x_test, _ = fashion
    model = MLPClassifier(hidden_layer_sizes=(16, 8), activation=activation, leaky_slope=0.2,
                          max_iter=2, random_state=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train[:500], y_train[:500])
    assert model._fitted_config.activation == fastmlp_name
    twin, _ = reference.predict(list(zip(model.coefs_, model.intercepts_)), x_test[:300],
                                fastmlp_name, leaky_slope=0.2)
    np.testing.assert_allclose(model.predict_proba(x_test[:300]), twin, rtol=1e-10)


def test_residual_adds_the_skips_the_twin_adds(fashion):
    """residual=True: the fitted network (16, 16, 8: one skip) predicts as the NumPy twin
    with its skips, and not as the same weights without them."""
    from fastmlp import reference

    x_train, y_train, x_test, _ = fashion
    model = MLPClassifier(hidden_layer_sizes=(16, 16, 8), residual=True, max_iter=2,
                          random_state=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train[:500], y_train[:500])
    layers = list(zip(model.coefs_, model.intercepts_))
    twin, _ = reference.predict(layers, x_test[:300], "ReLU", residual=True)
    np.testing.assert_allclose(model.predict_proba(x_test[:300]), twin, rtol=1e-10)
    plain, _ = reference.predict(layers, x_test[:300], "ReLU")
    assert np.abs(plain - twin).max() > 1e-3


@pytest.mark.parametrize("norm,length", [("layer", 4), ("batch", 6)])
def test_a_normed_network_predicts_as_the_twin(fashion, norm, length):
    """norm="layer" or "batch": the fitted network's hidden layers hold the normalisation's
    vectors, and it predicts as the NumPy twin with them (not as its weights and biases
    alone)."""
    from fastmlp import reference

    x_train, y_train, x_test, _ = fashion
    model = MLPClassifier(hidden_layer_sizes=(16, 8), norm=norm, max_iter=2,
                          random_state=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train[:500], y_train[:500])
    layers = model._layout.views(model._state.params)
    assert [len(layer) for layer in layers] == [length, length, 2]
    twin, _ = reference.predict(layers, x_test[:300], "ReLU")
    np.testing.assert_allclose(model.predict_proba(x_test[:300]), twin, rtol=1e-10)
    plain, _ = reference.predict(list(zip(model.coefs_, model.intercepts_)), x_test[:300],
                                 "ReLU")
    assert np.abs(plain - twin).max() > 1e-3


def test_partial_fit_one_epoch_per_call(fashion):
    x_train, y_train, x_test, y_test = fashion
    model = MLPClassifier(hidden_layer_sizes=(32,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        model.partial_fit(x_train[:10], y_train[:10])
    classes = np.unique(y_train)
    for _ in range(5):
        model.partial_fit(x_train, y_train, classes=classes)
    assert model.n_iter_ == 5 and model.score(x_test, y_test) > 0.6


def test_early_stopping_keeps_validation_scores(fashion):
    x_train, y_train, _, _ = fashion
    model = MLPClassifier(hidden_layer_sizes=(32,), early_stopping=True, n_iter_no_change=2,
                          validation_fraction=0.2, max_iter=60, learning_rate_init=0.01,
                          random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    assert len(model.validation_scores_) == model.n_iter_ < 60  # stopped early
    assert model.best_validation_score_ == max(model.validation_scores_) > 0.7


def test_fit_runs_the_compiled_epoch_of_fastmlp_train(fashion, monkeypatch):
    from fastmlp import engine

    calls = []
    real = engine.run_epoch

    def spy(state, layout, pixels, labels, order, batch_size, settings, *args, **kwargs):
        calls.append((layout.sizes, pixels.dtype, batch_size, settings.optimizer,
                      settings.weight_decay, settings.task, settings.loss))
        return real(state, layout, pixels, labels, order, batch_size, settings, *args, **kwargs)

    monkeypatch.setattr(engine, "run_epoch", spy)
    x_train, y_train, _, _ = fashion
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(hidden_layer_sizes=(20, 10), activation="tanh", alpha=0.64, batch_size=64,
                      solver="sgd", max_iter=3).fit(x_train, y_train)
    # sgd with momentum 0.9 and Nesterov (scikit-learn's default) is fastmlp's nag; scikit-
    # learn's per-step L2 gradient alpha * W / batch is weight_decay = alpha / batch
    assert calls == [((784, 20, 10, 10), np.float32, 64, "nag", 0.01, "classification",
                      "cross_entropy")] * 3


def test_pipeline_and_grid_search(fashion):
    x_train, y_train, x_test, y_test = fashion
    pipeline = make_pipeline(StandardScaler(), MLPClassifier(max_iter=5, random_state=0))
    search = GridSearchCV(pipeline, {"mlpclassifier__hidden_layer_sizes": [(16,), (64,)],
                                     "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(x_train[:1000], y_train[:1000])
    assert len(search.cv_results_["params"]) == 4
    assert search.best_estimator_.score(x_test, y_test) > 0.7


def test_bad_parameters_are_value_errors(fashion):
    x_train, y_train, _, _ = fashion
    # the settings table's own rules, each error naming the estimator's parameter
    for bad, named in ((dict(solver="lbfgs"), "lbfgs"), (dict(activation="softplus"), "activation"),
                       (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes"),
                       (dict(learning_rate_init=0), "learning_rate_init"),
                       (dict(batch_size=0), "batch_size"), (dict(alpha=-1.0), "alpha"),
                       (dict(beta_2=1.0), "beta_2"), (dict(solver="adagrad"), "solver"),
                       (dict(validation_fraction=0.0), "validation_fraction"),
                       (dict(dtype="float16"), "dtype"), (dict(max_iter=0), "max_iter"),
                       (dict(leaky_slope=-1.0), "leaky_slope"),
                       (dict(residual=True, hidden_layer_sizes=(16, 8)), "residual"),
                       (dict(norm="group"), "norm")):
        with pytest.raises(ValueError, match=named):
            MLPClassifier(**{"max_iter": 1, **bad}).fit(x_train[:50], y_train[:50])


def test_fastmlp_train_does_not_import_scikit_learn():
    code = "import sys, cli, fastmlp.trainer; sys.exit('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
