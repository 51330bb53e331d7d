"""The whole model in plain NumPy, written to be read.

This is the test oracle for the Numba kernels and the baseline of every benchmark. It is the
math of record (docs/ARCHITECTURE.md points here), on a list of (W, b) arrays, one batch at a
time:

    forward:   A_0 = X;  A_{l+1} = act(A_l @ W_l + b_l);  P = softmax(A_L @ W_L + b_L)
    losses:    cross_entropy       = -(1/B) sum_b log P[b, y_b]
               mean_squared_error  =  (1/B) sum_b sum_k (P[b, k] - onehot(y)[b, k])^2
    backward:  dZ_L = dLoss/dlogits;  dW_l = A_l^T dZ_l;  db_l = sum_b dZ_l;
               dZ_{l-1} = (dZ_l W_l^T) * act'(A_l)
    update:    g = dW + weight_decay * W (weights only), then the optimizer (see `update`).
"""
from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------- activations
# Each derivative is written in terms of the activation's OUTPUT a, which is all the
# backward pass keeps.


def activate(name: str, z: np.ndarray) -> np.ndarray:
    if name == "identity":
        return z
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "ReLU":
        return np.maximum(z, 0)
    raise ValueError(name)


def activation_derivative(name: str, a: np.ndarray) -> np.ndarray:
    if name == "identity":
        return np.ones_like(a)
    if name == "sigmoid":
        return a * (1 - a)
    if name == "tanh":
        return 1 - a * a
    if name == "ReLU":
        return (a > 0).astype(a.dtype)
    raise ValueError(name)


# ----------------------------------------------------------------------------- losses


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def loss_and_grad(name: str, logits: np.ndarray, labels: np.ndarray):
    """(mean loss over the batch, dLoss/dlogits) for softmax outputs against integer labels."""
    batch = logits.shape[0]
    probs = softmax(logits)
    onehot = np.zeros_like(probs)
    onehot[np.arange(batch), labels] = 1
    if name == "cross_entropy":
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -log_probs[np.arange(batch), labels].mean()
        return loss, (probs - onehot) / batch
    if name == "mean_squared_error":
        diff = probs - onehot
        loss = (diff * diff).sum(axis=1).mean()
        grad_probs = 2 * diff / batch
        # back through softmax: dz_j = p_j * (g_j - sum_k g_k p_k)
        return loss, probs * (grad_probs - (grad_probs * probs).sum(axis=1, keepdims=True))
    raise ValueError(name)


# ----------------------------------------------------------------------------- the network


def forward(layers, x: np.ndarray, activation: str):
    """All activations [A_0 = x, A_1, ..., A_L] and the output logits."""
    activations = [x]
    for weights, bias in layers[:-1]:
        activations.append(activate(activation, activations[-1] @ weights + bias))
    weights, bias = layers[-1]
    return activations, activations[-1] @ weights + bias


def backward(layers, activations, dlogits: np.ndarray, activation: str):
    """[(dW_0, db_0), ...] of the data loss."""
    grads = [None] * len(layers)
    dz = dlogits
    for l in range(len(layers) - 1, -1, -1):
        weights, _bias = layers[l]
        grads[l] = (activations[l].T @ dz, dz.sum(axis=0))
        if l > 0:
            dz = (dz @ weights.T) * activation_derivative(activation, activations[l])
    return grads


def gradients(layers, x, labels, activation: str, loss: str):
    """(loss, [(dW, db), ...], logits) for one batch."""
    activations, logits = forward(layers, x, activation)
    batch_loss, dlogits = loss_and_grad(loss, logits, labels)
    return batch_loss, backward(layers, activations, dlogits, activation), logits


# ----------------------------------------------------------------------------- optimizers


class Optimizer:
    """Holds the hyperparameters, the step count t and two state arrays per parameter.

    hyper: a mapping with the names of kernels.optimizers.HYPERPARAMETERS (a TrainConfig's
    field names): learning_rate, momentum, beta, beta1, beta2, epsilon, weight_decay."""

    def __init__(self, name, layers, hyper):
        self.name = name
        self.hyper = dict(hyper)
        self.t = 0
        self.state = [[(np.zeros_like(p), np.zeros_like(p)) for p in pair] for pair in layers]

    def step(self, layers, grads):
        """One update of every W and b in place."""
        self.t += 1
        decay = self.hyper["weight_decay"]
        for (weights, bias), (dw, db), state in zip(layers, grads, self.state):
            self.update(weights, dw + decay * weights, state[0])
            self.update(bias, db, state[1])

    def update(self, param, g, state):
        s1, s2 = state  # u / v / s / (m1, m2), by optimizer
        h, t = self.hyper, self.t
        lr, eps = h["learning_rate"], h["epsilon"]
        if self.name == "sgd":
            param -= lr * g
        elif self.name == "momentum":
            s1[...] = h["momentum"] * s1 + lr * g
            param -= s1
        elif self.name == "nag":
            s1[...] = h["momentum"] * s1 + g
            param -= lr * (g + h["momentum"] * s1)
        elif self.name == "rmsprop":
            s1[...] = h["beta"] * s1 + (1 - h["beta"]) * g * g
            param -= lr * g / (np.sqrt(s1) + eps)
        elif self.name in ("adam", "nadam"):
            b1, b2 = h["beta1"], h["beta2"]
            s1[...] = b1 * s1 + (1 - b1) * g
            s2[...] = b2 * s2 + (1 - b2) * g * g
            m_hat = s1 / (1 - b1 ** t)
            v_hat = s2 / (1 - b2 ** t)
            if self.name == "nadam":
                m_hat = b1 * m_hat + (1 - b1) * g / (1 - b1 ** t)
            param -= lr * m_hat / (np.sqrt(v_hat) + eps)
        else:
            raise ValueError(self.name)


# ----------------------------------------------------------------------------- an epoch


def train_epoch(layers, optimizer: Optimizer, x, labels, order, batch_size, activation, loss):
    """One pass over x[order] in batches; returns (mean batch loss, accuracy)."""
    loss_sum, correct, batches = 0.0, 0, 0
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch_loss, grads, logits = gradients(layers, x[rows], labels[rows], activation, loss)
        optimizer.step(layers, grads)
        loss_sum += batch_loss
        correct += int((logits.argmax(axis=1) == labels[rows]).sum())
        batches += 1
    return loss_sum / batches, correct / len(order)


def evaluate(layers, x, labels, activation, loss):
    """(mean loss, accuracy, predicted labels) over a whole set."""
    _, logits = forward(layers, x, activation)
    mean_loss, _ = loss_and_grad(loss, logits, labels)
    predictions = logits.argmax(axis=1)
    return float(mean_loss), float((predictions == labels).mean()), predictions
