"""fastmlp as scikit-learn estimators: `fastmlp.MLPClassifier` and `fastmlp.MLPRegressor`.

    from fastmlp import MLPClassifier, MLPRegressor
    model = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=20).fit(X, y)
    model.predict(X), model.predict_proba(X), model.score(X, y)
    MLPRegressor(max_iter=200).fit(X, y).predict(X)      # y (n,) or (n, n_targets)

Training runs the compiled epoch of `fastmlp train` (engine.run_epoch: one call per epoch,
no Python per batch) on float features of any width; predictions and the validation
score of early_stopping run the compiled forward pass of `fastmlp predict` and `evaluate`
(engine.predict_outputs, engine.score_params), in the model's dtype (float32 by default;
dtype="float64" for float64).

What each learns (the task and loss of `fastmlp train --task`):

    MLPClassifier  labels of any type, one per row: classification, a softmax over classes_
                   (loss "cross_entropy" or "mean_squared_error"). A 0/1 indicator matrix y
                   (n_samples, n_labels): multilabel, a sigmoid per label trained by binary
                   cross-entropy (the multilabel form of "cross_entropy"); classes_ is then
                   0 .. n_labels - 1, predict gives the indicator matrix in y's dtype and
                   predict_proba the (n_samples, n_labels) probabilities.
    MLPRegressor   numbers, y (n_samples,) or (n_samples, n_targets): regression with
                   identity outputs, loss "squared_error" (scikit-learn's 0.5 * mean squared
                   error), "poisson" (log link: outputs exp(z); y >= 0), or fastmlp's
                   "absolute_error" and "huber" (huber_delta). A 1-D y, or one target,
                   predicts 1-D (as scikit-learn). Predictions come in X's float dtype.

Parameters take scikit-learn's `MLPClassifier` / `MLPRegressor` names where they overlap;
the rest are fastmlp's settings under their `fastmlp train` names (loss, huber_delta,
leaky_slope, residual, norm, weight_init, beta, dtype, threads, ensemble). They become a
TrainConfig, checked by the settings table's own rules (a bad value is a ValueError naming
the estimator's parameter). Both estimators share this mapping and the training loop
(_BaseMLP). How they map:

    solver              "adam" (default), "sgd", "momentum", "nag", "rmsprop", "nadam".
                        "sgd" behaves like scikit-learn's: with momentum > 0 it is "nag"
                        (nesterovs_momentum=True) or "momentum"; "lbfgs" is not offered.
    activation          identity, logistic, tanh, relu (scikit-learn's names), gelu, silu,
                        leaky_relu (which scikit-learn lacks; leaky_slope is the negative
                        slope, 0.01 by default), or fastmlp's (identity, sigmoid, tanh, ReLU,
                        GELU, SiLU, LeakyReLU).
    alpha               scikit-learn adds alpha * 0.5 * ||W||^2 / s to each batch's loss
                        (s: the batch's summed sample weight, its rows when unweighted), so
                        each step's gradient gains alpha * W / s. fastmlp's weight_decay adds
                        weight_decay * W to it: the run uses weight_decay = alpha /
                        (batch_size * the rows' mean weight), the summed weight of an
                        average batch (alpha / batch_size unweighted; the last, smaller
                        batch of an epoch gets slightly less decay than scikit-learn would
                        give it).
    batch_size          "auto" = min(200, n_samples), as in scikit-learn.
    learning_rate_init  the (constant) learning rate; beta_1, beta_2, epsilon: Adam's.
    max_iter            epochs (fit); tol and n_iter_no_change stop earlier as in
                        scikit-learn (training loss, or with early_stopping the validation
                        score: accuracy, or R^2 for the regressor; the parameters kept are
                        those of the last epoch whose score came within tol of the best, so
                        of equally good epochs the most trained one; best_validation_score_
                        is the best score). n_iter_no_change is checked as fastmlp's --patience,
                        validation_fraction as --val-fraction. partial_fit runs one epoch
                        and never stops early.
    class_weight        (MLPClassifier) None, {class: weight} or "balanced" (n_samples /
                        (n_classes * the class's weighted count)), multiplied into the sample
                        weights as in scikit-learn's other classifiers; not for multilabel y,
                        and "balanced" not in partial_fit.

sample_weight (fit and partial_fit) weighs each row's loss: a batch's loss is sum_b w_b l_b /
sum_b w_b, so a weight of 2 counts as the row given twice, and a weight of 0 as the row left
out (such rows are skipped, and a class only they hold is not in classes_). What holds
exactly, and what only on average:

    - When one batch takes every training row (batch_size >= the rows of positive weight;
      "auto" does up to 200), the order of the rows cannot change the step, and training
      takes them in one canonical order: rows equal in X and y are merged into one row of
      their summed weight and sorted by their bytes (shuffle changes nothing there). A fit
      with integer weights then gives, bit for bit, the model of the fit on the rows repeated
      that many times, in float32 too (scikit-learn's check_sample_weight_equivalence).
    - With several batches an epoch, a row of weight k weighs as k copies in the batch it is
      in, whereas k copies would be shuffled into different batches: the two fits agree on
      average over the shuffles (as in scikit-learn's own MLP), not step for step. A weight
      of 0 is still exactly the row left out.
    - early_stopping holds out validation_fraction of the distinct rows (rows equal in X and
      y go together, drawn from the canonical order; stratified by class when every class
      has two distinct rows and each part can hold every class), each with its summed
      weight; the validation score is weighted. A row of weight k is thus held out or
      trained on as its k copies would be. (partial_fit holds nothing out.)

Inputs are used as they are (no /255 scaling: scale them yourself, e.g. in a Pipeline), and
so are the regressor's targets: unlike `fastmlp train`, it does not standardise them (as
scikit-learn's MLPRegressor; TransformedTargetRegressor with a StandardScaler does).
loss_curve_ holds the mean training loss of each epoch (without the alpha term); t_ counts
the training rows seen (as scikit-learn's).

ensemble=K (fastmlp's --ensemble) trains K networks side by side, each epoch one compiled
epoch per member, and predict, predict_proba and score average the members' outputs (the
probabilities; the values). Member 0 draws from random_state as a single network does;
member k from random_state + k when that is an int (so without early_stopping it is the
model a fit with random_state + k gives, bit for bit), else from the same generator, in
turn. loss_curve_ is the members' mean loss; early_stopping scores the ensemble; coefs_ and
intercepts_ are then one list per member. scikit-learn is imported with this module only:
`fastmlp train` never loads it.
"""
from __future__ import annotations

import math
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .config import TrainConfig
from .errors import ConfigError
from .kernels.interface import LEAKY_SLOPE, OPTIMIZERS, TASK_LOSSES
from .model import Layout, init_params

# scikit-learn's activation names -> fastmlp's (fastmlp's own names are accepted too), and
# the ones scikit-learn lacks in its lower-case style (PyTorch's functional names)
SKLEARN_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh",
                       "relu": "ReLU", "gelu": "GELU", "silu": "SiLU",
                       "leaky_relu": "LeakyReLU"}
SOLVERS = ("sgd",) + tuple(name for name in OPTIMIZERS if name != "sgd")
# The settings-table field each parameter becomes (the others keep their names)
SETTING_OF = {"solver": "optimizer", "learning_rate_init": "learning_rate",
              "beta_1": "beta1", "beta_2": "beta2", "alpha": "weight_decay",
              "max_iter": "epochs", "validation_fraction": "val_fraction",
              "n_iter_no_change": "patience", "hidden_layer_sizes": "hidden_size"}
PARAMETER_OF = {setting: parameter for parameter, setting in SETTING_OF.items()}
PARAMETER_OF["num_layers"] = "hidden_layer_sizes"
# The figure of score_params that early_stopping's validation score is, per task
VALIDATION_SCORE = {"classification": "accuracy", "multilabel": "accuracy", "regression": "r2"}
COMPARED_BYTES = 1 << 22  # rows are compared in chunks of about this many bytes


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: the parameters' mapping onto a validated
    TrainConfig, the sample weights, the training rows and the epochs. A subclass reads its
    y (_targets), names its losses (LOSSES) and reads the outputs.

    Each subclass lists its parameters in its own __init__ (scikit-learn reads them from its
    signature) and stores them with _store."""

    LOSSES: tuple = ()  # the `loss` parameter's choices

    def _store(self, parameters: dict) -> None:
        for name, value in parameters.items():
            if name != "self":
                setattr(self, name, value)

    # ------------------------------------------------------------------ scikit-learn API

    def fit(self, X, y, sample_weight=None):
        """Train for up to max_iter epochs (from the current weights with warm_start).
        sample_weight: one weight >= 0 per row (see the module docstring)."""
        return self._fit(X, y, sample_weight, incremental=False)

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_state")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags

    # fitted attributes scikit-learn's MLPs have, made from the flat buffer
    @property
    def coefs_(self) -> list:
        """Each layer's weights (n_in, n_out); with ensemble > 1, one such list per member."""
        check_is_fitted(self)
        members = [[layer[0].copy() for layer in self._layout.views(state.params)]
                   for state in self._member_states()]
        return members[0] if len(members) == 1 else members

    @property
    def intercepts_(self) -> list:
        """Each layer's biases; with ensemble > 1, one such list per member. (With
        norm="layer", a hidden layer's LayerNorm scale and shift are fastmlp's own, not in
        coefs_ or intercepts_.)"""
        check_is_fitted(self)
        members = [[layer[1].copy() for layer in self._layout.views(state.params)]
                   for state in self._member_states()]
        return members[0] if len(members) == 1 else members

    def _member_states(self) -> list:
        """The members' TrainStates (a model fitted before ensembles has one, _state)."""
        return self.__dict__.get("_states") or [self._state]

    def _params(self) -> np.ndarray:
        """The parameters the engine runs: (P,) for one network, (K, P) for an ensemble."""
        from .rundir import stacked

        return stacked([state.params for state in self._member_states()])

    def to_onnx(self, path) -> None:
        """Write the network as an ONNX graph, the same as `fastmlp export` writes (its
        outputs by the task; the output names in its metadata)."""
        check_is_fitted(self)
        from .export import to_onnx
        from .files import atomic_writer

        graph = to_onnx(self._layout, self._params(), self._fitted_config.activation,
                        self._output_names(), loss=self._fitted_config.loss,
                        leaky_slope=self._fitted_config.leaky_slope,
                        residual=self._fitted_config.residual)
        with atomic_writer(path, "wb") as handle:
            handle.write(graph.SerializeToString())

    # ------------------------------------------------------------------ for subclasses

    def _targets(self, X, y, reset: bool, member, first: bool, classes, incremental: bool):
        """(X, y as the kernels take it: class indices int64 (N,) or float targets (N, T),
        the task, the number of outputs); X, y validated. member: the rows of positive
        weight (None: every row); first: the model starts afresh; classes: partial_fit's."""
        raise NotImplementedError

    def _task_settings(self) -> dict:
        """TrainConfig settings of the subclass's own parameters."""
        return {}

    def _loss_of(self, task: str):
        return self.loss

    def _sample_weights(self, y, w, incremental: bool):
        """The weights the rows train with (the classifier multiplies class_weight in)."""
        return w

    def _outputs(self, X):
        """The output layer's values of the rows of X, in the model's dtype."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        from .engine import predict_outputs, thread_limits

        with thread_limits(self._fitted_config.threads):
            outputs, _ = predict_outputs(self._params(), self._layout, X,
                                         self._fitted_config)
        return X, outputs

    # ------------------------------------------------------------------ the mapping

    def _activation_name(self) -> str:
        return SKLEARN_ACTIVATIONS.get(self.activation, self.activation)

    def _config(self, task: str, batch_size: int, mean_weight: float = 1.0) -> TrainConfig:
        """The estimator's parameters as a validated TrainConfig: the settings table's rules
        check them; a bad value is a ValueError naming the parameter."""
        if self.solver == "lbfgs":
            raise ValueError("solver 'lbfgs' is not offered; use one of " + ", ".join(SOLVERS))
        if str(self.loss).lower() not in [name.lower() for name in self.LOSSES]:
            raise ValueError(f"loss={self.loss!r} is not one of {', '.join(self.LOSSES)}")
        optimizer = self.solver
        if optimizer == "sgd" and self.momentum > 0:
            optimizer = "nag" if self.nesterovs_momentum else "momentum"
        widths = self.hidden_layer_sizes
        widths = (widths,) if np.isscalar(widths) else tuple(widths)
        widths = tuple(int(w) if isinstance(w, np.integer) else w for w in widths)
        values = dict(activation=self._activation_name(), leaky_slope=self.leaky_slope,
                      residual=self.residual, norm=getattr(self, "norm", "none"), task=task,
                      loss=self._loss_of(task),
                      optimizer=optimizer, learning_rate=self.learning_rate_init,
                      momentum=self.momentum, beta=self.beta, beta1=self.beta_1,
                      beta2=self.beta_2, epsilon=self.epsilon, weight_init=self.weight_init,
                      dtype=self.dtype, threads=self.threads, epochs=self.max_iter,
                      batch_size=batch_size, val_fraction=self.validation_fraction,
                      patience=self.n_iter_no_change, num_layers=len(widths),
                      hidden_size=widths if widths else 1, ensemble=self.ensemble,
                      weight_decay=self.alpha / (batch_size * mean_weight)
                      if _is_number(self.alpha) else self.alpha, **self._task_settings())
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

    # ------------------------------------------------------------------ the work

    def _fit(self, X, y, sample_weight, incremental: bool, classes=None):
        first = not hasattr(self, "_state") or not (incremental or self.warm_start)
        w = member = None
        if sample_weight is not None:
            w = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                     allow_all_zero_weights=True)
            if (w < 0).any():
                row = int(np.argmax(w < 0))
                raise ValueError(f"sample_weight must be >= 0 (a weight k counts the row as k "
                                 f"copies of it), got {w[row]:g} for row {row}")
            if not (w > 0).any():
                raise ValueError("sample_weight is zero for every row: at least one weight "
                                 "must be positive")
            member = w > 0
        X, y, task, n_outputs = self._targets(X, y, reset=first, member=member, first=first,
                                              classes=classes, incremental=incremental)
        w = self._sample_weights(y, w, incremental)
        if w is not None:
            if not (w > 0).any():
                raise ValueError("the rows' weights (sample_weight times class_weight) are "
                                 "zero for every row: at least one weight must be positive")
            member = w > 0
        # the parameters' errors before any work; the run's own settings when an epoch is
        # several batches of every row of positive weight (else _train makes them again)
        rows = len(y) if member is None else int(member.sum())
        batch = self._batch_size(rows)
        mean_weight = 1.0 if w is None else w[member].sum() / rows
        probe = (self._config(task, batch, mean_weight), batch, mean_weight)
        self._train(X, y, w, member, task, n_outputs, probe, first,
                    1 if incremental else self.max_iter, incremental)
        return self

    def _member_rng(self, k: int, rng):
        """The random generator of ensemble member k >= 1: random_state + k for an int
        random_state, else the one generator the members draw from in turn."""
        if isinstance(self.random_state, (int, np.integer)) \
                and not isinstance(self.random_state, bool):
            return check_random_state(int(self.random_state) + k)
        return rng

    def _split(self, x, y, w, member, rng, task):
        """early_stopping's hold-out: (training rows' mask, (x_val, y_val, w_val)) from the
        distinct rows (groups of rows equal in x and y, in the canonical order), each with
        its summed weight."""
        representatives, group = _groups(x, y, member)
        weights = _group_weights(group, w, member, len(representatives))
        count = len(representatives)
        held = math.ceil(self.validation_fraction * count)
        if count < 2 or held >= count:
            raise ValueError(f"early_stopping needs at least 2 distinct samples (one to train "
                             f"on, one to validate), got {count} "
                             f"sample{'' if count == 1 else 's'}; or use early_stopping=False")
        stratify = None
        if task == "classification":
            labels = y[representatives]
            counts = np.bincount(labels)
            counts = counts[counts > 0]
            if counts.min() >= 2 and min(held, count - held) >= len(counts):
                stratify = labels
        train, val = train_test_split(np.arange(count), test_size=held, stratify=stratify,
                                      random_state=rng.randint(2**31))
        val = np.sort(val)  # the canonical order
        training = np.isin(group, train)  # (rows of weight 0 are in no group)
        rows = representatives[val]
        return training, (np.ascontiguousarray(x[rows]), y[rows], weights[val])

    def _train(self, X, y, w, member, task, n_outputs, probe: tuple, fresh: bool,
               epochs: int, incremental: bool):
        """Run the epochs. probe: (the run's TrainConfig for this batch size and mean weight,
        the batch size, the mean weight): kept if the training rows give the same two."""
        from .engine import TrainState, run_epoch, score_params, thread_limits

        dtype = np.dtype(probe[0].dtype)
        rng = check_random_state(self.random_state)
        # the caller's own array when it suits (the kernels only read it); writeable, as a
        # read-only array would compile the epoch a second time for its own Numba type
        x = np.require(X, dtype=dtype, requirements=["C", "W"])

        validation = None
        early_stopping = self.early_stopping and not incremental
        training = member
        if early_stopping:
            training, validation = self._split(x, y, w, member, rng, task)
        rows = np.flatnonzero(training) if training is not None else np.arange(len(x))
        batch = self._batch_size(len(rows))
        one_batch = batch >= len(rows)
        if one_batch:  # every row in one batch: the canonical order of the distinct rows
            order, group = _groups(x, y, training)
            weights = np.zeros(len(x))
            weights[order] = _group_weights(group, w, training, len(order))
            batch = len(order)
            mean_weight = weights[order].sum() / len(order)
        else:
            order = None
            weights = w
            mean_weight = 1.0 if w is None else w[rows].sum() / len(rows)
        config = probe[0]
        if (batch, mean_weight) != probe[1:]:
            config = self._config(task, batch, mean_weight)
        hidden = config.hidden_widths

        rngs = [rng] + [self._member_rng(k, rng) for k in range(1, config.ensemble)]
        if fresh:
            self._layout = Layout((x.shape[1],) + hidden + (n_outputs,), config.norm)
            self._states = [TrainState.fresh(init_params(
                self._layout, config.weight_init, np.random.default_rng(member.randint(2**31)),
                dtype)) for member in rngs]
            self._state = self._states[0]
            self.loss_curve_ = []
            self.validation_scores_ = [] if early_stopping else None
            self.best_loss_ = None if early_stopping else np.inf
            self.best_validation_score_ = None
            self.n_iter_ = 0
            self.t_ = 0
            self._no_improvement = 0
        elif self._state.params.dtype != dtype or self._layout.sizes[1:-1] != hidden:
            raise ValueError("warm_start / partial_fit: dtype or hidden_layer_sizes changed "
                             "since the model was fitted")
        elif self._layout.sizes[-1] != n_outputs:
            raise ValueError(f"warm_start / partial_fit: y has {n_outputs} outputs (classes, "
                             f"labels or targets), the fitted model {self._layout.sizes[-1]}")
        elif len(self._member_states()) != config.ensemble:
            raise ValueError(f"warm_start / partial_fit: ensemble={config.ensemble}, the fitted "
                             f"model has {len(self._member_states())} members")
        states = self._member_states()
        if not incremental:
            self._no_improvement = 0
            if early_stopping:
                self.validation_scores_ = self.validation_scores_ or []
                self.best_loss_ = None
                best_params = [state.params.copy() for state in states]
        if not early_stopping and self.best_loss_ is None:  # after an early-stopping fit
            self.best_loss_ = np.inf
        self._fitted_config = config
        with thread_limits(config.threads):
            for _ in range(epochs):
                start = time.perf_counter()
                losses = []
                for state, member_rng in zip(states, rngs):
                    if one_batch:
                        epoch_order = order
                    elif self.shuffle:
                        epoch_order = rows[member_rng.permutation(len(rows))]
                    else:
                        epoch_order = rows
                    loss, _, batches = run_epoch(state, self._layout, x, y,
                                                 epoch_order.astype(np.int64, copy=False),
                                                 batch, config, weights=weights)
                    if batches < -(-len(epoch_order) // batch) or not np.isfinite(loss):
                        raise ValueError(f"training diverged in epoch {self.n_iter_ + 1} (the "
                                         "loss became NaN or infinite): try a smaller "
                                         "learning_rate_init")
                    losses.append(loss)
                loss = losses[0] if len(losses) == 1 else float(np.mean(losses))
                self.n_iter_ += 1
                self.t_ += len(rows)
                self.loss_curve_.append(float(loss))
                if early_stopping:
                    x_val, y_val, w_val = validation
                    score = score_params(self._params(), self._layout, x_val, y_val, config,
                                         weights=w_val)[VALIDATION_SCORE[task]]
                    self.validation_scores_.append(score)
                    if (self.best_validation_score_ is None
                            or score > self.best_validation_score_ + self.tol):
                        self._no_improvement = 0
                    else:
                        self._no_improvement += 1
                    if self.best_validation_score_ is None or score > self.best_validation_score_:
                        self.best_validation_score_ = score
                    if score >= self.best_validation_score_ - self.tol:  # as good, within tol
                        best_params = [state.params.copy() for state in states]
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
        if early_stopping:
            for state, params in zip(states, best_params):
                state.params[:] = params
        self.n_layers_ = len(self._layout.sizes)
        self.n_outputs_ = n_outputs


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multilayer perceptron classifier trained by fastmlp's compiled epoch: one label per
    row (a softmax over classes_), or a 0/1 indicator matrix y (multilabel: a sigmoid per
    label).

    See the module docstring for how each parameter maps onto fastmlp's settings and what
    sample_weight and class_weight mean."""

    LOSSES = TASK_LOSSES["classification"] + TASK_LOSSES["multilabel"]
    _multilabel = False  # set by fit (a model pickled before multilabel has none)

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate_init=0.001, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, beta=0.9, loss="cross_entropy", weight_init="Xavier",
                 dtype="float32", threads=None, class_weight=None, leaky_slope=LEAKY_SLOPE,
                 residual=False, norm="none", ensemble=1):
        self._store(locals())

    def partial_fit(self, X, y, classes=None, *, sample_weight=None):
        """One epoch over (X, y). The first call needs `classes`: every label y may hold
        (for a multilabel y: 0 .. n_labels - 1). sample_weight is keyword-only: scikit-learn's
        MLPClassifier takes it before classes, fastmlp's (as SGDClassifier) after them."""
        if not hasattr(self, "_state") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of classes_ (for
        multilabel: each label's probability, (n_samples, n_labels)), in the model's dtype
        (float32 by default, as scikit-learn's MLPClassifier keeps a float32 X in float32):
        the compiled forward pass of `fastmlp predict`."""
        return self._outputs(X)[1]

    def predict_log_proba(self, X):
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most likely class of every row; for multilabel, the indicator matrix (each
        label whose probability is above 0.5) in the dtype of the y fitted on."""
        probabilities = self.predict_proba(X)
        if self._multilabel:
            return (probabilities > 0.5).astype(self._label_dtype)
        return self.classes_[np.argmax(probabilities, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        # a 0/1 indicator matrix y trains by binary cross-entropy, the multilabel form of
        # cross_entropy; mean_squared_error has none
        tags.classifier_tags.multi_label = str(self.loss).lower() != "mean_squared_error"
        return tags

    def _output_names(self) -> list:
        return [str(name) for name in self.classes_]

    def _loss_of(self, task: str):
        if task == "multilabel" and str(self.loss).lower() == "cross_entropy":
            return "binary_cross_entropy"  # log loss, one sigmoid per label
        return self.loss

    def _targets(self, X, y, reset, member, first, classes, incremental):
        X, y = validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32),
                             multi_output=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        kind = type_of_target(y, input_name="y")
        if kind not in ("binary", "multiclass", "multilabel-indicator"):
            check_classification_targets(y)  # scikit-learn's error for a continuous y
            raise ValueError(f"MLPClassifier takes one label per row, or a multilabel "
                             f"indicator matrix of 0/1 (n_samples, n_labels); got a {kind} y")
        multilabel = kind == "multilabel-indicator"
        if multilabel:
            if self.class_weight is not None:
                raise ValueError("class_weight is not offered for multilabel y (an indicator "
                                 "matrix): give the rows' weights as sample_weight")
            found = np.arange(y.shape[1])
        else:
            given = y if member is None else y[member]
            # scikit-learn's checks of the labels when they make classes_, else the quick way
            found = unique_labels(given) if first and classes is None else np.unique(given)
        if classes is not None:
            classes = unique_labels(np.asarray(classes))
        if first:
            classes = found if classes is None else classes
            if multilabel and not np.array_equal(classes, found):
                raise ValueError(f"classes of a multilabel y are 0 .. {y.shape[1] - 1}, got "
                                 f"{classes}")
            if not multilabel and len(classes) < 2:
                raise ValueError(f"MLPClassifier needs samples of at least 2 classes in the "
                                 f"data (with a positive weight), got 1 class "
                                 f"({classes[0]!r})")
        else:
            if multilabel != self._multilabel:
                raise ValueError("warm_start / partial_fit: y is "
                                 f"{'' if multilabel else 'not '}multilabel, the fitted "
                                 f"model {'is' if self._multilabel else 'is not'}")
            if classes is not None and not np.array_equal(classes, self.classes_):
                raise ValueError(f"classes {classes} differ from the first call's "
                                 f"{self.classes_}")
            if not (multilabel or incremental or np.array_equal(found, self.classes_)):
                raise ValueError(f"warm_start: y has classes {found}, the fitted model "
                                 f"{self.classes_}")
            classes = self.classes_
        if not multilabel:
            unknown = np.setdiff1d(found, classes)
            if len(unknown):
                raise ValueError(f"y holds labels {unknown} not in classes {classes}")
        if first:
            self.classes_ = classes
            self._multilabel = multilabel
            self._label_dtype = y.dtype
            self.out_activation_ = "logistic" if multilabel else "softmax"
        if multilabel:
            return X, np.require(y, np.float64, ["C"]), "multilabel", y.shape[1]
        labels = np.searchsorted(classes, y).astype(np.int64)
        if member is not None:
            labels[~member] = 0  # rows of weight 0 are never read: any class index will do
        return X, labels, "classification", len(classes)

    def _sample_weights(self, y, w, incremental):
        if self.class_weight is None or y.ndim == 2:
            return w
        if incremental and isinstance(self.class_weight, str) and self.class_weight == "balanced":
            raise ValueError("class_weight='balanced' is not offered in partial_fit (one call "
                             "sees one batch, not the classes' frequencies): give a "
                             "{class: weight} mapping, e.g. from "
                             "sklearn.utils.class_weight.compute_class_weight")
        member = np.ones(len(y), dtype=bool) if w is None else w > 0
        present = np.unique(y[member])
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            per_class = np.zeros(len(self.classes_))
            per_class[present] = compute_class_weight(
                "balanced", classes=present, y=y[member],
                sample_weight=None if w is None else w[member])
        elif isinstance(self.class_weight, dict):
            per_class = compute_class_weight(self.class_weight, classes=self.classes_,
                                             y=self.classes_[y[member]])
        else:
            raise ValueError(f"class_weight must be None, 'balanced' or a mapping class -> "
                             f"weight, got {self.class_weight!r}")
        if not (np.isfinite(per_class) & (per_class >= 0)).all():
            raise ValueError(f"class_weight: every weight must be a finite number >= 0, got "
                             f"{self.class_weight!r}")
        weights = per_class[y]
        return weights if w is None else w * weights


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multilayer perceptron regressor trained by fastmlp's compiled epoch: y (n_samples,)
    or (n_samples, n_targets), identity outputs (exp for loss="poisson").

    See the module docstring for how each parameter maps onto fastmlp's settings and what
    sample_weight means."""

    LOSSES = TASK_LOSSES["regression"]

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate_init=0.001, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, loss="squared_error", huber_delta=1.0, beta=0.9,
                 weight_init="Xavier", dtype="float32", threads=None, leaky_slope=LEAKY_SLOPE,
                 residual=False, norm="none", ensemble=1):
        self._store(locals())

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """The predicted values, (n_samples,) for one target, else (n_samples, n_targets), in
        X's float dtype (computed in the model's): the compiled forward pass of `fastmlp
        predict` (exp of the output layer for loss="poisson")."""
        X, outputs = self._outputs(X)
        outputs = outputs.astype(X.dtype, copy=False)
        return outputs.ravel() if outputs.shape[1] == 1 else outputs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags

    def _output_names(self) -> list:
        return [f"y{k}" for k in range(self.n_outputs_)]

    def _task_settings(self) -> dict:
        return {"huber_delta": self.huber_delta}

    def _targets(self, X, y, reset, member, first, classes, incremental):
        X, y = validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32),
                             multi_output=True, y_numeric=True)
        targets = np.require(y.reshape(len(y), -1), np.float64, ["C"])
        if self.loss == "poisson" and (targets < 0).any():
            raise ValueError(f"loss='poisson' needs y >= 0 (a count or rate; its outputs are "
                             f"exp(z)), got y down to {targets.min():g}")
        if not first and targets.shape[1] != self.n_outputs_:
            raise ValueError(f"warm_start / partial_fit: y has {targets.shape[1]} targets, the "
                             f"fitted model {self.n_outputs_}")
        if first:
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        return X, targets, "regression", targets.shape[1]


# ----------------------------------------------------------------------------- helpers

def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _row_values(values: np.ndarray) -> np.ndarray:
    """Each row of values as one value to sort and compare: itself for a 1-D array (class
    indices), else the row's bytes (so equal means bit for bit equal)."""
    if values.ndim == 1:
        return values
    values = np.ascontiguousarray(values)
    return values.view(np.dtype((np.void, values.shape[1] * values.itemsize))).ravel()


def _ids(values: np.ndarray, member) -> np.ndarray:
    """An id (N,) per row of values: equal rows get the same id, numbered in the order of
    their bytes (so independent of the rows' order). Rows outside member get -1."""
    keys = _row_values(values)
    ranked = np.argsort(keys, kind="stable")
    if member is not None:
        ranked = ranked[member[ranked]]
    new = np.ones(len(ranked), dtype=bool)
    chunk = max(1, COMPARED_BYTES // max(1, keys.itemsize))
    for start in range(1, len(ranked), chunk):  # chunks: never a copy of all the rows
        block = keys[ranked[start - 1:start + chunk]]
        new[start:start + len(block) - 1] = block[1:] != block[:-1]
    ids = np.full(len(values), -1, dtype=np.int64)
    ids[ranked] = np.cumsum(new) - 1
    return ids


def _groups(x, y, member):
    """The rows (of member; None: all) equal in x and y as groups, in a canonical order that
    depends only on their values: (a representative row of each group, in that order; the
    group of every row, -1 outside member)."""
    x_ids, y_ids = _ids(x, member), _ids(y, member)
    rows = np.arange(len(x)) if member is None else np.flatnonzero(member)
    ordered = rows[np.lexsort((y_ids[rows], x_ids[rows]))]
    new = np.ones(len(ordered), dtype=bool)
    new[1:] = ((x_ids[ordered[1:]] != x_ids[ordered[:-1]])
               | (y_ids[ordered[1:]] != y_ids[ordered[:-1]]))
    group = np.full(len(x), -1, dtype=np.int64)
    group[ordered] = np.cumsum(new) - 1
    return ordered[new], group


def _group_weights(group, w, member, count: int) -> np.ndarray:
    """Each group's summed weight (its rows' count when w is None)."""
    rows = group >= 0 if member is None else member & (group >= 0)
    return np.bincount(group[rows], weights=None if w is None else w[rows],
                       minlength=count).astype(np.float64)
