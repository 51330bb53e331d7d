"""Test RMSE of fastmlp and scikit-learn's MLPRegressor after E epochs on the generated
regression table of `fastmlp bench`, at equal settings.

    python bench/regression_accuracy.py [--batch-size 32] [--epochs 10] [--random-state 0]
                                        [--alpha 1e-4] [--rows 100000]

The table is benchmarks.regression_table (seed 0: 50 standard-normal features, a smooth
nonlinear standardized target plus noise); its last fifth is the test set. Both train the
bench's regression configuration (benchmarks.REGRESSION_CONFIG: two hidden layers of 256
ReLU units, Adam, learning rate 1e-3, squared_error, float32) for E epochs, no early stop:

    fastmlp   the engine itself (engine.run_epoch, one compiled call per epoch, a fresh
              shuffle each epoch), Xavier init, weight decay alpha / batch size
    sklearn   benchmarks.sklearn_mlp of the same settings (an MLPRegressor with alpha, its
              own Glorot-uniform init and shuffles), fit with max_iter E

--random-state seeds both one's initial weights and batch order (not the table). Prints each
one's test RMSE and R^2 (metrics.task_metrics), its training seconds (fastmlp's compile
excluded: a warm-up epoch on a few rows runs first) and the noise floor, the best RMSE
possible. (The per-epoch speed ratio, timed interleaved, is `fastmlp bench --group
regression`'s sklearn column.)
"""
import argparse
import time
import warnings

import numpy as np

TEST_SHARE = 0.2


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--random-state", type=int, default=0,
                        help="both models' initial weights and batch order")
    parser.add_argument("--alpha", type=float, default=1e-4,
                        help="scikit-learn's L2 alpha (fastmlp: weight decay alpha / batch size)")
    parser.add_argument("--rows", type=int, default=None,
                        help="rows of the generated table, train and test (default: the "
                             "bench's 100,000)")
    args = parser.parse_args()

    from sklearn.exceptions import ConvergenceWarning

    from fastmlp import benchmarks
    from fastmlp.config import TrainConfig
    from fastmlp.engine import score_params
    from fastmlp.metrics import task_metrics

    x, y = benchmarks.regression_table(args.rows or benchmarks.REGRESSION_ROWS)
    train = len(y) - int(len(y) * TEST_SHARE)
    x_train, y_train, x_test, y_test = x[:train], y[:train], x[train:], y[train:]
    config = TrainConfig(**benchmarks.REGRESSION_CONFIG, batch_size=args.batch_size,
                         weight_decay=args.alpha / args.batch_size, epochs=args.epochs,
                         seed=args.random_state).validated()
    print(f"{train:,} training rows, {len(y) - train:,} test rows, "
          f"{x.shape[1]} features; noise floor: test RMSE "
          f"{benchmarks.regression_noise_floor():.4f}", flush=True)

    fit_fastmlp(config, x_train[:64], y_train[:64], 1, 0)  # compile outside the timing
    start = time.perf_counter()
    params, layout = fit_fastmlp(config, x_train, y_train, args.epochs, args.random_state)
    seconds = time.perf_counter() - start
    report("fastmlp", args, seconds, score_params(params, layout, x_test, y_test, config))

    model = benchmarks.sklearn_mlp(config)
    model.set_params(max_iter=args.epochs, tol=0.0, n_iter_no_change=args.epochs + 1,
                     random_state=args.random_state)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    seconds = time.perf_counter() - start
    report("sklearn", args, seconds,
           task_metrics("regression", y_test, model.predict(x_test), None))


def fit_fastmlp(config, x, y, epochs, random_state):
    """(parameters, layout) after `epochs` compiled epochs from a Xavier start, both drawn from
    random_state: the initial weights, then each epoch's order."""
    from fastmlp.engine import TrainState, run_epoch
    from fastmlp.model import Layout, init_params

    layout = Layout((x.shape[1], *config.hidden_widths, 1))
    rng = np.random.default_rng(random_state)
    state = TrainState.fresh(init_params(layout, config.weight_init, rng,
                                         np.dtype(config.dtype)))
    for _ in range(epochs):
        run_epoch(state, layout, x, y, rng.permutation(len(y)), config.batch_size, config)
    return state.params, layout


def report(name, args, seconds, figures):
    print(f"{name:8s} batch {args.batch_size:4d}  seed {args.random_state}  "
          f"{args.epochs} epochs  {seconds:7.1f} s  test RMSE {figures['rmse']:.4f}  "
          f"R^2 {figures['r2']:.4f}", flush=True)


if __name__ == "__main__":
    main()
