"""One worker of the MultiWorkerMirroredStrategy test (run as a process by the test).

    python tests/helpers/multi_worker.py OUT_DIR INDEX PORT [PORT ...]

With one port it trains alone (a one-worker cluster). Trains a small wrapped CNN with Z/U
updates every 2 steps (tf_keras: fit with UpdateADMM; Keras 3, whose fit does not run under
MultiWorkerMirroredStrategy: a custom loop calling update_admm), hard-projects, retrains,
and writes every ADMM variable and weight to OUT_DIR/worker_INDEX.npz; only the chief
(index 0) writes OUT_DIR/chief_report.json.
"""

import json
import os
import sys


def main(out: str, index: int, ports: list[str]) -> None:
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import numpy as np
    import tensorflow as tf

    import tf_admm
    from tf_admm import keras

    legacy = not keras.__version__.startswith("3.")  # tf_keras

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 128).astype("int64")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).with_options(options)

    with strategy.scope():
        inputs = keras.Input((8, 8, 1))
        h = keras.layers.Conv2D(4, 3, name="conv")(inputs)
        h = keras.layers.Flatten()(h)
        h = keras.layers.Dense(16, activation="relu", name="hidden")(h)
        model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))
        wrapped = tf_admm.prune_low_magnitude(
            model,
            {"hidden": 0.75, "conv": 0.5},
            schedule=tf_admm.schedules.OneShot(2, "step"),
        )
        optimizer = keras.optimizers.SGD(0.05)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")

    if legacy:  # tf_keras: fit with the callback
        wrapped.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(True))
        wrapped.fit(data, epochs=3, verbose=0, callbacks=[tf_admm.UpdateADMM()])
        tf_admm.hard_project(wrapped)
        wrapped.fit(data, epochs=2, verbose=0, callbacks=[tf_admm.UpdateADMM()])
    else:  # Keras 3's fit does not run under this strategy: a custom loop with the plain functions

        @tf.function
        def train_step(batch):
            def replica(xb, yb):
                with tf.GradientTape() as tape:
                    logits = wrapped(xb, training=True)
                    loss = tf.nn.compute_average_loss(loss_fn(yb, logits), global_batch_size=32)
                    loss += tf.add_n(wrapped.losses) / strategy.num_replicas_in_sync
                grads = tape.gradient(loss, wrapped.trainable_variables)
                optimizer.apply_gradients(zip(grads, wrapped.trainable_variables))

            strategy.run(replica, args=batch)

        dist = strategy.experimental_distribute_dataset(data)
        tf_admm.initialize_admm(wrapped)
        step = 0
        for _ in range(3):
            for batch in dist:
                train_step(batch)
                step += 1
                if step % 2 == 0:
                    tf_admm.update_admm(wrapped)
        tf_admm.hard_project(wrapped)
        for _ in range(2):
            for batch in dist:
                train_step(batch)

    arrays = {}
    for w in tf_admm.find_wrappers(wrapped):
        for kind, variables in (
            ("w", w.constrained),
            ("z", w.z_vars),
            ("u", w.u_vars),
            ("mask", w.mask_vars),
        ):
            for i, v in enumerate(variables):
                arrays[f"{w.name}/{kind}{i}"] = np.asarray(tf.convert_to_tensor(v))
        arrays[f"{w.name}/num_updates"] = np.asarray(tf.convert_to_tensor(w.num_updates))
        arrays[f"{w.name}/rho"] = np.asarray(tf.convert_to_tensor(w.rho))
    np.savez(os.path.join(out, f"worker_{index}.npz"), **arrays)
    if index == 0:  # the chief alone writes reports
        with open(os.path.join(out, "chief_report.json"), "w") as handle:
            json.dump(tf_admm.report.layer_sparsity(wrapped), handle)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
