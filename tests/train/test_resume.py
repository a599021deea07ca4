"""Resuming continues bit for bit: the same per-step losses, history and weights as one uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import threading

import numpy as np
import pytest

from cnnkit.errors import CheckpointError
from cnnkit.train.checkpoint import METRICS_FILE, read_checkpoint
from cnnkit.train.trainer import TrainingInterrupted, fit
from tests.train.conftest import tiny_net

RECIPE = {"epochs": 3, "optimizer": {"type": "adam", "lr": 0.02},
          "schedule": {"type": "cosine", "warmup_epochs": 0.5}, "loss": {"type": "cross_entropy",
                                                                         "label_smoothing": 0.1}}
STEPS = 18  # 3 epochs of 6 steps


def net(seed=0):
    return tiny_net(noise=True, seed=seed, **RECIPE)


class Recorder:
    """Per-step losses; raises `error` once when the run reaches global step `stop_at`."""

    def __init__(self, stop_at=None, error=KeyboardInterrupt, event="step"):
        self.losses, self.stop_at, self.error, self.event = [], stop_at, error, event

    def __call__(self, info):
        if info["event"] == "step":
            self.losses.append(info["loss"])
        step = info["global_step"] if info["event"] == "step" else info["step"]
        if info["event"] == self.event and step == self.stop_at:
            self.stop_at = None
            raise self.error


def without_seconds(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    trained, recorder = net(), Recorder()
    history = fit(trained, out=tmp_path_factory.mktemp("straight"), progress=False, callbacks=[recorder])
    return trained, recorder.losses, without_seconds(history)


def assert_same_run(resumed, losses, history, straight):
    trained, straight_losses, straight_history = straight
    assert losses == straight_losses
    assert without_seconds(history) == straight_history
    for key in trained.params:
        assert np.array_equal(resumed.params[key], trained.params[key]), key
    assert resumed.rng.bit_generator.state == trained.rng.bit_generator.state


@pytest.mark.parametrize("stop_at", [1, 4, 6, 7, 17, 18])
def test_interrupt_mid_epoch_then_resume(tmp_path, straight, stop_at):
    first = Recorder(stop_at)
    with pytest.raises(TrainingInterrupted) as stopped:
        fit(net(), out=tmp_path, progress=False, callbacks=[first])
    epoch, step = divmod(stop_at - 1, 6)
    assert (stopped.value.epoch, stopped.value.step) == (epoch + 1, step + 1)
    assert f"stopped at epoch {epoch + 1} step {step + 1} of 6" in str(stopped.value)
    checkpoint = read_checkpoint(tmp_path)
    assert (checkpoint.global_step, checkpoint.epoch, checkpoint.step_in_epoch) == (stop_at, epoch, step + 1)

    resumed, second = net(seed=1), Recorder()  # other initial weights: everything must come from the file
    history = fit(resumed, out=tmp_path, resume=True, progress=False, callbacks=[second])
    assert_same_run(resumed, first.losses + second.losses, history, straight)
    lines = (tmp_path / METRICS_FILE).read_text().splitlines()
    assert [json.loads(line) for line in lines] == history.epochs


def test_interrupt_between_epochs_then_resume(tmp_path, straight):
    first = Recorder(stop_at=6, event="epoch")
    with pytest.raises(TrainingInterrupted, match="stopped at epoch 1 step 6 of 6") as stopped:
        fit(net(), out=tmp_path, progress=False, callbacks=[first])
    assert len(stopped.value.history) == 1
    resumed, second = net(), Recorder()
    history = fit(resumed, out=tmp_path, resume=True, progress=False, callbacks=[second])
    assert_same_run(resumed, first.losses + second.losses, history, straight)


def test_interrupted_twice(tmp_path, straight):
    losses = []
    for stop_at in (5, 11):
        recorder = Recorder(stop_at)
        with pytest.raises(TrainingInterrupted):
            fit(net(), out=tmp_path, resume=stop_at != 5, progress=False, callbacks=[recorder])
        losses += recorder.losses
    resumed, last = net(), Recorder()
    history = fit(resumed, out=tmp_path, resume=True, progress=False, callbacks=[last])
    assert_same_run(resumed, losses + last.losses, history, straight)


def test_crash_resumes_from_the_last_epoch_checkpoint(tmp_path, straight):
    crash = Recorder(stop_at=9, error=RuntimeError("power cut"))
    with pytest.raises(RuntimeError, match="power cut"):
        fit(net(), out=tmp_path, progress=False, callbacks=[crash])
    assert read_checkpoint(tmp_path).global_step == 6  # a crash writes nothing: the epoch checkpoint stays
    resumed, second = net(), Recorder()
    history = fit(resumed, out=tmp_path, resume=True, progress=False, callbacks=[second])
    assert_same_run(resumed, crash.losses[:6] + second.losses, history, straight)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread()
                    or signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
                    reason="needs Python's own SIGINT handler in the main thread")
def test_ctrl_c_stops_after_the_current_step(tmp_path, straight, capsys):
    def press_ctrl_c(info):
        if info.get("global_step") == 8:
            os.kill(os.getpid(), signal.SIGINT)

    first = Recorder()
    with pytest.raises(TrainingInterrupted, match="stopped at epoch 2 step 2 of 6"):
        fit(net(), out=tmp_path, progress=False, callbacks=[first, press_ctrl_c])
    assert "stopping after this step" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    resumed, second = net(), Recorder()
    history = fit(resumed, out=tmp_path, resume=True, progress=False, callbacks=[second])
    assert_same_run(resumed, first.losses + second.losses, history, straight)


def test_resuming_a_finished_run_does_nothing(tmp_path):
    history = fit(net(), out=tmp_path, progress=False)
    recorder = Recorder()
    again = fit(net(), out=tmp_path, resume=True, progress=False, callbacks=[recorder])
    assert again.epochs == history.epochs and recorder.losses == []


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        fit(net(), out=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="needs the run folder"):
        fit(net(), resume=True)


def test_resume_with_another_recipe_is_refused(tmp_path):
    with pytest.raises(TrainingInterrupted):
        fit(net(), out=tmp_path, progress=False, callbacks=[Recorder(3)])
    other = tiny_net(noise=True, **{**RECIPE, "epochs": 5})
    with pytest.raises(CheckpointError, match=r"different spec or recipe.*epochs: 3.*epochs: 5"):
        fit(other, out=tmp_path, resume=True)
