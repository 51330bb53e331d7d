"""Test accuracy of fastmlp and scikit-learn after 10 epochs on Fashion-MNIST, at equal settings.

    python bench/sklearn_accuracy.py [--batch-size 32] [--epochs 10] [--random-state 0]

Both are scikit-learn estimators with the same parameters (Adam, three hidden layers of 64
ReLU units, learning rate 1e-3, alpha 1e-4, float32 inputs scaled to [0, 1], no early stop):
`fastmlp.MLPClassifier` (the compiled epoch) and `sklearn.neural_network.MLPClassifier`.
Prints each one's test accuracy and training seconds. (The per-epoch speed ratio, timed
interleaved with other contenders, is `fastmlp bench`'s sklearn column.)
"""
import argparse
import time
import warnings

import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--random-state", type=int, default=0,
                        help="both estimators' random_state (initial weights, batch order)")
    args = parser.parse_args()

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    from fastmlp import MLPClassifier as FastMLP
    from fastmlp.data import load_dataset, scale_pixels

    data = load_dataset("fashion_mnist")
    x_train, x_test = (scale_pixels(x, np.float32) for x in (data.x_train, data.x_test))
    settings = dict(hidden_layer_sizes=(64, 64, 64), activation="relu", solver="adam",
                    alpha=1e-4, batch_size=args.batch_size, learning_rate_init=1e-3,
                    max_iter=args.epochs, tol=0.0, n_iter_no_change=args.epochs + 1,
                    random_state=args.random_state)
    for name, estimator in (("fastmlp", FastMLP(**settings)), ("sklearn", SklearnMLP(**settings))):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            estimator.fit(x_train, data.y_train)
        seconds = time.perf_counter() - start
        print(f"{name:8s} batch {args.batch_size:4d}  seed {args.random_state}  "
              f"{estimator.n_iter_} epochs  "
              f"{seconds:7.1f} s  test accuracy {estimator.score(x_test, data.y_test):.4f}",
              flush=True)


if __name__ == "__main__":
    main()
