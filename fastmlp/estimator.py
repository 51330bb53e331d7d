"""fastmlp as a scikit-learn estimator: `fastmlp.MLPClassifier`.

    from fastmlp import MLPClassifier
    model = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=20).fit(X, y)
    model.predict(X), model.predict_proba(X), model.score(X, y)

Training runs the compiled epoch of `fastmlp train` (engine.run_epoch: one call per epoch,
no Python per batch) on float features of any width; predict_proba and the validation
score of early_stopping run the compiled forward pass of `fastmlp predict` and `evaluate`
(engine.predict_outputs, engine.evaluate_params), in the model's dtype (float32 by
default; dtype="float64" for float64).

Parameters take scikit-learn's `MLPClassifier` names where the two overlap; the rest are
fastmlp's settings under their `fastmlp train` names (loss, weight_init, beta, dtype,
threads). They become a TrainConfig, checked by the settings table's own rules (a bad
value is a ValueError naming the parameter). How they map:

    solver              "adam" (default), "sgd", "momentum", "nag", "rmsprop", "nadam".
                        "sgd" behaves like scikit-learn's: with momentum > 0 it is "nag"
                        (nesterovs_momentum=True) or "momentum"; "lbfgs" is not offered.
    activation          identity, logistic, tanh, relu (scikit-learn's names) or fastmlp's
                        (identity, sigmoid, tanh, ReLU).
    alpha               scikit-learn adds alpha * 0.5 * ||W||^2 / n to each batch's loss
                        (n: the batch's rows), so each step's gradient gains alpha * W / n.
                        fastmlp's weight_decay adds weight_decay * W to it: the run uses
                        weight_decay = alpha / batch_size (the last, smaller batch of an
                        epoch gets slightly less decay than scikit-learn would give it).
    batch_size          "auto" = min(200, n_samples), as in scikit-learn.
    learning_rate_init  the (constant) learning rate; beta_1, beta_2, epsilon: Adam's.
    max_iter            epochs (fit); tol and n_iter_no_change stop earlier as in
                        scikit-learn (training loss, or with early_stopping the validation
                        accuracy, whose best parameters are kept). n_iter_no_change is
                        checked as fastmlp's --patience, validation_fraction as
                        --val-fraction.

Inputs are used as they are (no /255 scaling: scale them yourself, e.g. in a Pipeline).
loss_curve_ holds the mean training loss of each epoch (without the alpha term).
scikit-learn is imported with this module only: `fastmlp train` never loads it.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from .config import TrainConfig
from .errors import ConfigError
from .kernels.interface import OPTIMIZERS
from .model import Layout, init_params

# scikit-learn's activation names -> fastmlp's (fastmlp's own names are accepted too)
SKLEARN_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh",
                       "relu": "ReLU"}
SOLVERS = ("sgd",) + tuple(name for name in OPTIMIZERS if name != "sgd")
# The settings-table field each parameter becomes (the others keep their names)
SETTING_OF = {"solver": "optimizer", "learning_rate_init": "learning_rate",
              "beta_1": "beta1", "beta_2": "beta2", "alpha": "weight_decay",
              "max_iter": "epochs", "validation_fraction": "val_fraction",
              "n_iter_no_change": "patience", "hidden_layer_sizes": "hidden_size"}
PARAMETER_OF = {setting: parameter for parameter, setting in SETTING_OF.items()}
PARAMETER_OF["num_layers"] = "hidden_layer_sizes"


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """A multilayer perceptron classifier trained by fastmlp's compiled epoch.

    See the module docstring for how each parameter maps onto fastmlp's settings."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate_init=0.001, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, beta=0.9, loss="cross_entropy", weight_init="Xavier",
                 dtype="float32", threads=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.beta = beta
        self.loss = loss
        self.weight_init = weight_init
        self.dtype = dtype
        self.threads = threads

    # ------------------------------------------------------------------ scikit-learn API

    def fit(self, X, y):
        """Train for up to max_iter epochs (from the current weights with warm_start)."""
        X, y = self._validate(X, y, reset=True)
        fresh = not (self.warm_start and hasattr(self, "_state"))
        classes = unique_labels(y)
        if not fresh and not np.array_equal(classes, self.classes_):
            raise ValueError(f"warm_start: y has classes {classes}, the fitted model "
                             f"{self.classes_}")
        self._train(X, y, classes, fresh, self.max_iter, incremental=False)
        return self

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y). The first call needs `classes`: every label y may hold."""
        first = not hasattr(self, "_state")
        X, y = self._validate(X, y, reset=first)
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            classes = unique_labels(np.asarray(classes))
        elif classes is not None and not np.array_equal(unique_labels(np.asarray(classes)),
                                                        self.classes_):
            raise ValueError(f"classes {classes} differ from the first call's {self.classes_}")
        else:
            classes = self.classes_
        unknown = np.setdiff1d(np.unique(y), classes)
        if len(unknown):
            raise ValueError(f"y holds labels {unknown} not in classes {classes}")
        self._train(X, y, classes, first, 1, incremental=True)
        return self

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of classes_, in
        the model's dtype (float32 by default, as scikit-learn's MLPClassifier keeps a float32
        X in float32): the compiled forward pass of `fastmlp predict`."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        from .engine import predict_outputs, thread_limits

        with thread_limits(self._fitted_config.threads):
            probabilities, _ = predict_outputs(self._state.params, self._layout, X,
                                               self._fitted_config)
        return probabilities

    def predict_log_proba(self, X):
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most likely class of every row."""
        probabilities = self.predict_proba(X)
        return self.classes_[np.argmax(probabilities, axis=1)]

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_state")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = False
        return tags

    # fitted attributes scikit-learn's MLPClassifier has, made from the flat buffer
    @property
    def coefs_(self) -> list:
        check_is_fitted(self)
        return [w.copy() for w, _ in self._layout.views(self._state.params)]

    @property
    def intercepts_(self) -> list:
        check_is_fitted(self)
        return [b.copy() for _, b in self._layout.views(self._state.params)]

    def to_onnx(self, path) -> None:
        """Write the network as an ONNX graph, the same as `fastmlp export` writes (its
        "label" output indexes classes_; class names in its metadata)."""
        check_is_fitted(self)
        from .export import to_onnx
        from .files import atomic_writer

        graph = to_onnx(self._layout, self._state.params, self._fitted_config.activation,
                        [str(name) for name in self.classes_])
        with atomic_writer(path, "wb") as handle:
            handle.write(graph.SerializeToString())

    # ------------------------------------------------------------------ the work

    def _validate(self, X, y, reset):
        X, y = validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32),
                             multi_output=False)
        check_classification_targets(y)
        return X, y

    def _activation_name(self) -> str:
        return SKLEARN_ACTIVATIONS.get(self.activation, self.activation)

    def _config(self, batch_size: int) -> TrainConfig:
        """The estimator's parameters as a validated TrainConfig: the settings table's rules
        check them; a bad value is a ValueError naming the parameter."""
        if self.solver == "lbfgs":
            raise ValueError("solver 'lbfgs' is not offered; use one of " + ", ".join(SOLVERS))
        optimizer = self.solver
        if optimizer == "sgd" and self.momentum > 0:
            optimizer = "nag" if self.nesterovs_momentum else "momentum"
        widths = self.hidden_layer_sizes
        widths = (widths,) if np.isscalar(widths) else tuple(widths)
        widths = tuple(int(w) if isinstance(w, np.integer) else w for w in widths)
        values = dict(activation=self._activation_name(), loss=self.loss, optimizer=optimizer,
                      learning_rate=self.learning_rate_init, momentum=self.momentum,
                      beta=self.beta, beta1=self.beta_1, beta2=self.beta_2,
                      epsilon=self.epsilon, weight_init=self.weight_init, dtype=self.dtype,
                      threads=self.threads, epochs=self.max_iter, batch_size=batch_size,
                      val_fraction=self.validation_fraction, patience=self.n_iter_no_change,
                      num_layers=len(widths), hidden_size=widths if widths else 1,
                      weight_decay=self.alpha / batch_size if _is_number(self.alpha)
                      else self.alpha)
        values = {name: value.item() if isinstance(value, np.generic) else value
                  for name, value in values.items()}
        try:
            return TrainConfig(**values).validated()
        except ConfigError as exc:
            parameter = PARAMETER_OF.get(exc.setting, exc.setting)
            reason = str(exc).split(": ", 1)[-1]
            if parameter in ("alpha", "hidden_layer_sizes"):  # shown as the user gave it
                reason = f"{getattr(self, parameter)!r}: {reason.split(' ', 1)[-1]}"
            if parameter == "activation":
                reason += f" (or scikit-learn's {', '.join(SKLEARN_ACTIVATIONS)})"
            raise ValueError(f"{parameter}={reason}") from None

    def _batch_size(self, n: int) -> int:
        if self.batch_size == "auto":
            return min(200, n)
        if not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1:
            raise ValueError(f"batch_size must be 'auto' or a whole number >= 1, "
                             f"got {self.batch_size!r}")
        return min(int(self.batch_size), n)

    def _train(self, X, y, classes, fresh: bool, epochs: int, incremental: bool):
        from .engine import TrainState, evaluate_params, run_epoch, thread_limits

        if len(classes) < 2:
            raise ValueError(f"MLPClassifier needs samples of at least 2 classes in the data, "
                             f"got 1 class ({classes[0]!r})")
        config = self._config(self._batch_size(len(y)))
        dtype = np.dtype(config.dtype)
        rng = check_random_state(self.random_state)
        labels = np.searchsorted(classes, y).astype(np.int64)
        # the caller's own array when it suits (the kernels only read it); writeable, as a
        # read-only array would compile the epoch a second time for its own Numba type
        x = np.require(X, dtype=dtype, requirements=["C", "W"])

        x_val = y_val = None
        if self.early_stopping and not incremental:
            stratify = labels if np.bincount(labels).min() >= 2 else None
            x, x_val, labels, y_val = train_test_split(
                x, labels, test_size=self.validation_fraction, stratify=stratify,
                random_state=rng.randint(2**31))
            x = np.ascontiguousarray(x)
            x_val = np.ascontiguousarray(x_val)
        batch = self._batch_size(len(labels))
        if batch != config.batch_size:  # early_stopping's split left fewer rows
            config = self._config(batch)
        hidden = config.hidden_widths

        if fresh:
            self._layout = Layout((X.shape[1],) + hidden + (len(classes),))
            params = init_params(self._layout, config.weight_init,
                                 np.random.default_rng(rng.randint(2**31)), dtype)
            self._state = TrainState.fresh(params)
            self.classes_ = classes
            self.loss_curve_ = []
            self.validation_scores_ = [] if self.early_stopping and not incremental else None
            self.best_loss_ = np.inf
            self.best_validation_score_ = None
            self.n_iter_ = 0
            self._no_improvement = 0
        elif self._state.params.dtype != dtype or self._layout.sizes[1:-1] != hidden:
            raise ValueError("warm_start / partial_fit: dtype or hidden_layer_sizes changed "
                             "since the model was fitted")
        if not incremental:
            self._no_improvement = 0
            if self.early_stopping:
                self.validation_scores_ = self.validation_scores_ or []
                best_params = self._state.params.copy()
        state = self._state
        self._fitted_config = config
        with thread_limits(config.threads):
            for _ in range(epochs):
                start = time.perf_counter()
                order = (rng.permutation(len(labels)) if self.shuffle
                         else np.arange(len(labels))).astype(np.int64)
                loss, _, batches = run_epoch(state, self._layout, x, labels, order, batch,
                                             config)
                if batches < -(-len(labels) // batch) or not np.isfinite(loss):
                    raise ValueError(f"training diverged in epoch {self.n_iter_ + 1} (the loss "
                                     "became NaN or infinite): try a smaller "
                                     "learning_rate_init")
                self.n_iter_ += 1
                self.t_ = state.step
                self.loss_curve_.append(float(loss))
                if self.early_stopping and not incremental:
                    _, score, _ = evaluate_params(state.params, self._layout, x_val, y_val,
                                                  config)
                    self.validation_scores_.append(score)
                    if (self.best_validation_score_ is None
                            or score > self.best_validation_score_ + self.tol):
                        self._no_improvement = 0
                    else:
                        self._no_improvement += 1
                    if self.best_validation_score_ is None or score > self.best_validation_score_:
                        self.best_validation_score_ = score
                        best_params = state.params.copy()
                else:
                    if loss > self.best_loss_ - self.tol:
                        self._no_improvement += 1
                    else:
                        self._no_improvement = 0
                    self.best_loss_ = min(self.best_loss_, float(loss))
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {loss:.8f}"
                          + (f", validation score = {self.validation_scores_[-1]:.4f}"
                             if self.validation_scores_ else "")
                          + f" ({time.perf_counter() - start:.3f} s)")
                if not incremental and self._no_improvement > self.n_iter_no_change:
                    break
            else:
                if not incremental:
                    warnings.warn(f"Stochastic optimizer: maximum iterations ({self.max_iter}) "
                                  "reached and the optimization hasn't converged yet.",
                                  ConvergenceWarning)
        if self.early_stopping and not incremental:
            state.params[:] = best_params
        self.n_layers_ = len(self._layout.sizes)
        self.n_outputs_ = len(classes)
        self.out_activation_ = "softmax"


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
