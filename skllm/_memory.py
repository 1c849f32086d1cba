"""Peak memory of one piece of work (a ``fit``), as the comparison reports it.

On the CPU, torch allocates outside Python's allocator, so ``tracemalloc`` does not see
model weights, activations, gradients or optimizer state. What is measured instead is
the process's resident set (RSS): its peak during the work, less what it held just
before. The peak comes from sampling the RSS in a thread every few milliseconds, and,
where the work raised the process's all-time peak (``getrusage``'s ``ru_maxrss``), from
that exact kernel figure. Before the work starts, memory that the C allocator holds but no
longer uses is given back to the system (glibc's ``malloc_trim``), so that an earlier
fit's freed memory, reused without growing the resident set, does not hide this one's.
(A fitted estimator is freed by reference counting when dropped; ``gc.collect``, which
takes about 0.4 s with transformers imported, finds nothing more to free.)

On CUDA, the peak of the memory torch allocated on the GPUs, less what was allocated
before (``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``).
"""

import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading

# Sampling period of the resident set, in seconds.
INTERVAL = 0.005

try:
    import resource
except ImportError:  # Windows
    resource = None

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_trim = None


def rss_bytes():
    """Resident memory of this process in bytes, or ``None`` where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def _max_rss_bytes():
    """The process's all-time peak resident memory (``ru_maxrss``), or ``None``."""
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB elsewhere


def release_free_memory():
    """Give the C allocator's free memory back to the system (glibc only)."""
    global _trim
    if _trim is None:
        _trim = False
        try:
            _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError, TypeError):  # not glibc: nothing to trim
            pass
    if _trim:
        _trim(0)


def _cuda():
    """torch's CUDA module when torch is imported and has initialised CUDA, else ``None``."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda


class PeakMemory(contextlib.AbstractContextManager):
    """Measure the peak memory the block adds: ``rss_bytes`` (CPU) and ``cuda_bytes`` (GPUs).

    Either is ``None`` where it cannot be measured (no readable RSS; CUDA unused).
    Memory that stays allocated after the block counts too: the peak is at least it.
    """

    def __init__(self, interval=INTERVAL):
        self.interval = interval
        self.rss_bytes = None
        self.cuda_bytes = None

    def __enter__(self):
        release_free_memory()
        self._cuda_before = {}
        cuda = _cuda()
        if cuda is not None:
            for device in range(cuda.device_count()):
                cuda.reset_peak_memory_stats(device)
                self._cuda_before[device] = cuda.memory_allocated(device)
        self._max_rss_before = _max_rss_bytes()
        self._before = rss_bytes()
        self._peak = self._before
        self._stop = threading.Event()
        self._thread = None
        if self._before is not None:
            self._thread = threading.Thread(target=self._sample, name="skllm-peak-memory", daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            current = rss_bytes()
            if current is not None and current > self._peak:
                self._peak = current

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._peak = max(self._peak, rss_bytes() or 0)
            max_rss = _max_rss_bytes()
            if max_rss is not None and self._max_rss_before is not None and max_rss > self._max_rss_before:
                # The block set a new all-time peak: the kernel's figure is exact.
                self._peak = max(self._peak, max_rss)
            self.rss_bytes = max(0, self._peak - self._before)
        cuda = _cuda()
        if cuda is not None:
            self.cuda_bytes = sum(
                max(0, cuda.max_memory_allocated(d) - self._cuda_before.get(d, 0)) for d in range(cuda.device_count())
            )
        return False
