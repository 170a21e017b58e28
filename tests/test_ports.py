"""Three examples ported the way a new user ports them: imports and names changed, nothing else.

- Keras's "Simple MNIST convnet" (keras.io/examples/vision/mnist_convnet): channels-last images,
  `to_categorical`, a softmax head with "categorical_crossentropy", "adam" by name. It must train
  as well as its logits twin (the same network without the softmax, on a logits loss): a softmax
  head is never a silent double softmax.
- PyTorch's examples/mnist/main.py: a subclassed model composed in `call`, `log_softmax` and
  `NLLLoss`, Adadelta(lr=1.0) with StepLR(gamma=0.7), torch-style optimizer construction.
- Deep Learning with Python's regression (ch. 4, Boston housing; here scikit-learn's bundled
  diabetes data, so that nothing downloads): Dense(64)-Dense(64)-Dense(1), "rmsprop" by name,
  "mse" with an "mae" metric, targets of shape (N,).

The MNIST ports train on a 12,000-image slice of MNIST (../shared/data/mnist; they skip without it) for
one or two epochs, which keeps them to about ten seconds each on two cores.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gpunn
from gpunn import layers
from gpunn.utils import to_categorical

SHARED_MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist is not present")

TRAIN, TEST = 12000, 2000


def mnist_channels_last() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """MNIST as keras.datasets.mnist.load_data() gives it, scaled as the Keras example scales it."""
    (x_train, y_train), (x_test, y_test) = gpunn.data.load_mnist(SHARED_MNIST, normalize=False)
    x_train = x_train[:TRAIN, 0].astype("float32") / 255  # (N, 28, 28), as Keras loads it
    x_test = x_test[:TEST, 0].astype("float32") / 255
    return (np.expand_dims(x_train, -1), y_train[:TRAIN]), (np.expand_dims(x_test, -1), y_test[:TEST])


def keras_convnet(head: str | None) -> gpunn.Sequential:
    """The example's model, verbatim but for the layout: Keras defaults to channels_last, gpunn to
    channels_first, so the layers are built inside use_image_data_format (Keras's
    keras.config.set_image_data_format, scoped)."""
    num_classes, input_shape = 10, (28, 28, 1)
    gpunn.manual_seed(0)
    with layers.use_image_data_format("channels_last"):
        return gpunn.Sequential([
            gpunn.Input(shape=input_shape),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation=head),
        ])


@needs_mnist
@pytest.mark.slow
def test_keras_mnist_convnet_softmax_head_trains_like_its_logits_twin():
    (x_train, y_train), (x_test, y_test) = mnist_channels_last()
    y_train, y_test = to_categorical(y_train, 10), to_categorical(y_test, 10)
    scores = {}
    for head, loss in (("softmax", "categorical_crossentropy"),
                       (None, gpunn.losses.CategoricalCrossentropy(from_logits=True))):
        model = keras_convnet(head)
        model.compile(loss=loss, optimizer="adam", metrics=["accuracy"])
        model.fit(x_train, y_train, batch_size=128, epochs=1, validation_split=0.1, verbose=0)
        scores[head] = model.evaluate(x_test, y_test, verbose=0)
    (_, acc_softmax), (_, acc_logits) = scores["softmax"], scores[None]
    assert acc_logits > 0.9, scores
    assert abs(acc_softmax - acc_logits) <= 0.003, scores


class Net(gpunn.Model):
    """PyTorch's examples/mnist/main.py Net, with gpunn's layers for F.relu / F.max_pool2d /
    torch.flatten / F.log_softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = layers.Conv2D(32, 3, strides=1)
        self.conv2 = layers.Conv2D(64, 3, strides=1)
        self.dropout1 = layers.Dropout(0.25)
        self.dropout2 = layers.Dropout(0.5)
        self.fc1 = layers.Dense(128)
        self.fc2 = layers.Dense(10)
        self.relu1, self.relu2, self.relu3 = layers.ReLU(), layers.ReLU(), layers.ReLU()
        self.pool = layers.MaxPool2D(2)
        self.flatten = layers.Flatten()
        self.log_softmax = layers.LogSoftmax()

    def call(self, x, training=False):
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        x = self.dropout1(self.pool(x), training=training)
        x = self.flatten(x)
        x = self.dropout2(self.relu3(self.fc1(x)), training=training)
        return self.log_softmax(self.fc2(x))


@needs_mnist
@pytest.mark.slow
def test_pytorch_mnist_example_subclassed_nll_adadelta_steplr():
    (x_train, y_train), (x_test, y_test) = gpunn.data.load_mnist(SHARED_MNIST)
    x_train, y_train, x_test, y_test = x_train[:TRAIN], y_train[:TRAIN], x_test[:TEST], y_test[:TEST]
    mean, std = 0.1307, 0.3081  # transforms.Normalize((0.1307,), (0.3081,))
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    gpunn.manual_seed(1)
    model = Net()
    optimizer = gpunn.optim.Adadelta(model, lr=1.0)  # optim.Adadelta(model.parameters(), lr=args.lr)
    model.compile(loss=gpunn.losses.NLLLoss(), optimizer=optimizer, metrics=["accuracy"])
    scheduler = gpunn.optim.StepDecay(optimizer, step_size=1, gamma=0.7)
    history = model.fit(x_train, y_train, batch_size=64, epochs=2, verbose=0,
                        callbacks=[gpunn.callbacks.LearningRateScheduler(scheduler)])
    assert history.history["lr"] == pytest.approx([1.0, 0.7])
    _, acc = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    assert acc > 0.93


def diabetes() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_diabetes
    x, y = load_diabetes(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order].astype("float32"), y[order].astype("float32")
    split = 350
    train_data, test_data = x[:split], x[split:]
    mean, std = train_data.mean(axis=0), train_data.std(axis=0)  # the book's feature-wise normalization
    return ((train_data - mean) / std, y[:split]), ((test_data - mean) / std, y[split:])


def build_model(optimizer="rmsprop"):
    model = gpunn.Sequential([
        layers.Dense(64, activation="relu"),
        layers.Dense(64, activation="relu"),
        layers.Dense(1),
    ])
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    return model


@pytest.mark.slow
def test_deep_learning_with_python_regression_with_rmsprop_by_name():
    (train_data, train_targets), (test_data, test_targets) = diabetes()
    assert train_targets.shape == (350,)  # (N,) targets for a (N, 1) output, as the book has them
    maes = {}
    for name, optimizer in (("keras", "rmsprop"), ("torch", gpunn.optim.RMSprop)):
        gpunn.manual_seed(0)
        model = build_model(optimizer)
        model.fit(train_data, train_targets, epochs=130, batch_size=16, verbose=0)
        test_mse_score, test_mae_score = model.evaluate(test_data, test_targets, verbose=0)
        maes[name] = test_mae_score
        if name == "keras":  # by name: Keras's RMSprop defaults; the class keeps PyTorch's
            assert (model.optimizer.lr, model.optimizer.rho, model.optimizer.eps) == (1e-3, 0.9, 1e-7)
        else:
            assert (model.optimizer.lr, model.optimizer.rho, model.optimizer.eps) == (1e-2, 0.99, 1e-8)
    # PyTorch's defaults overshoot on this small table (measured 49.8 vs 43.7 MAE); Keras's do not
    assert maes["keras"] < 0.95 * maes["torch"], maes
    assert maes["keras"] < 50.0, maes
