"""The engine runs without the GIL, and Ctrl-C stops a generate cleanly: its requests are
aborted (every KV block comes back), KeyboardInterrupt is raised, and the LLM still works."""
import _thread
import os
import signal
import threading
import time

import pytest

from nanovllm import LLM, SamplingParams

LONG = SamplingParams(temperature=0, max_tokens=480, ignore_eos=True)
PROMPTS = [[1, 5 + i, 9] for i in range(48)]  # 48 x 480 tokens: seconds of work on the CPU


@pytest.fixture(scope="module")
def big(model_dir):
    return LLM(str(model_dir), num_kvcache_blocks=128)


def interrupt_during_generate(llm, interrupt):
    started = threading.Event()

    def later():
        started.wait()
        time.sleep(0.3)
        interrupt()

    t = threading.Thread(target=later)
    t.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            started.set()
            llm.generate(PROMPTS, LONG, use_tqdm=False)
    finally:
        t.join()
    return time.monotonic() - t0


@pytest.mark.parametrize("how", ["interrupt_main", "sigint"])
def test_ctrl_c_aborts_and_frees_every_block(big, how):
    interrupt = _thread.interrupt_main if how == "interrupt_main" else lambda: os.kill(os.getpid(), signal.SIGINT)
    elapsed = interrupt_during_generate(big, interrupt)
    assert elapsed < 5, "the interrupt was not seen between steps"
    assert big.num_free_kv_blocks == big.num_kv_blocks
    big._engine.check_invariants()
    # The next generate runs from a clean engine.
    outs = big.generate(["hello", [1, 2, 3]], SamplingParams(temperature=0, max_tokens=8, ignore_eos=True),
                        use_tqdm=False)
    assert [len(o["token_ids"]) for o in outs] == [8, 8]
    assert big.num_free_kv_blocks == big.num_kv_blocks


def test_interrupt_with_the_progress_bar(big, capsys):
    started = threading.Event()
    t = threading.Thread(target=lambda: (started.wait(), time.sleep(0.3), _thread.interrupt_main()))
    t.start()
    with pytest.raises(KeyboardInterrupt):
        started.set()
        big.generate(PROMPTS, LONG)
    t.join()
    assert big.num_free_kv_blocks == big.num_kv_blocks
    assert "Generating" in capsys.readouterr().err


def test_other_threads_run_while_the_engine_steps(big):
    counter = [0]
    stop = threading.Event()

    def tick():  # a thread that wants the GIL now and then
        while not stop.is_set():
            counter[0] += 1
            time.sleep(0.001)

    t = threading.Thread(target=tick)
    t.start()
    time.sleep(0.02)
    before = counter[0]
    t0 = time.monotonic()
    outs = big.generate(PROMPTS[:16], SamplingParams(temperature=0, max_tokens=100, ignore_eos=True), use_tqdm=False)
    elapsed = time.monotonic() - t0
    during = counter[0] - before
    stop.set()
    t.join()
    assert all(len(o["token_ids"]) == 100 for o in outs)
    # Had generate held the GIL throughout, tick() could not have run meanwhile.
    assert during >= min(20, elapsed * 1000 / 4), (during, elapsed)


def test_one_generate_at_a_time(big):
    errors = []
    first_running = threading.Event()

    def first():
        first_running.set()
        big.generate(PROMPTS[:16], SamplingParams(temperature=0, max_tokens=300, ignore_eos=True), use_tqdm=False)

    t = threading.Thread(target=first)
    t.start()
    first_running.wait()
    time.sleep(0.05)
    try:
        big.generate(["x"], SamplingParams(max_tokens=2), use_tqdm=False)
    except RuntimeError as e:
        errors.append(str(e))
    t.join()
    assert errors and "already generating" in errors[0]
    assert big.num_free_kv_blocks == big.num_kv_blocks
