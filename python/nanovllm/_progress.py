"""The progress bar of LLM.generate: tqdm when it is installed, a small one-line bar otherwise."""
import contextlib
import sys
import time


class _Bar:
    """Requests done and output tokens per second, updated by the engine after each step."""

    def __init__(self, total):
        self.total = total
        self.done = 0
        self.tokens = 0
        self.start = time.monotonic()
        self._last = 0.0
        try:
            from tqdm.auto import tqdm
            self._tqdm = tqdm(total=total, desc="Generating", dynamic_ncols=True)
        except ImportError:
            self._tqdm = None

    def rate(self):
        elapsed = time.monotonic() - self.start
        return self.tokens / elapsed if elapsed > 0 else 0.0

    def update(self, finished, new_tokens):
        self.done += finished
        self.tokens += new_tokens
        now = time.monotonic()
        if self._tqdm is not None:
            if now - self._last >= 0.1 or finished:
                self._tqdm.set_postfix_str(f"{self.rate():.0f} tok/s", refresh=False)
                self._last = now
            self._tqdm.update(finished)
        elif now - self._last >= 0.1 or self.done == self.total:
            self._last = now
            sys.stderr.write(f"\rGenerating: {self.done}/{self.total} requests, {self.rate():.0f} tok/s")
            sys.stderr.flush()

    def close(self):
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(f"{self.rate():.0f} tok/s", refresh=False)
            self._tqdm.close()
        else:
            sys.stderr.write(f"\rGenerating: {self.done}/{self.total} requests, {self.rate():.0f} tok/s\n")
            sys.stderr.flush()


@contextlib.contextmanager
def progress_bar(total, enabled):
    """A _Bar (closed on exit, also on Ctrl-C), or None when disabled."""
    if not enabled:
        yield None
        return
    bar = _Bar(total)
    try:
        yield bar
    finally:
        bar.close()
