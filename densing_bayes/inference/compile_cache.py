"""On-disk compile caches, so that a warm start skips compilation.

What each sampler can cache between processes (measured in ``densing-bayes bench``):

* PyMC's NUTS (C backend): PyTensor already caches every compiled C module in its compiledir
  (``~/.pytensor``); a warm start only repeats the graph rewrites.
* NumPyro (JAX): XLA executables are cached by JAX's persistent compilation cache once it has
  a directory, which :func:`enable_jax_cache` sets (``~/.cache/densing_bayes/jax``, or
  ``$DENSING_BAYES_CACHE/jax``). Entries are keyed by JAX on the lowered program, so a changed
  model, data shape or library version simply misses the cache.
* nutpie (numba): not cacheable. PyTensor caches its per-op numba functions, but nutpie's logp
  ``cfunc`` embeds process-specific addresses (numba reports ``has_dynamic_globals``: the
  scipy special functions behind the Beta likelihood's log-gamma and digamma), so its machine
  code cannot be reused by another process and it compiles in every process.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that moves every densing_bayes cache (default ``~/.cache/densing_bayes``).
CACHE_ENV = "DENSING_BAYES_CACHE"


def cache_dir() -> Path:
    """Root of densing_bayes's on-disk caches."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/densing_bayes").expanduser()


def jax_cache_dir() -> Path:
    return cache_dir() / "jax"


def enable_jax_cache(path: str | Path | None = None) -> Path:
    """Turn on JAX's persistent compilation cache in ``path`` (default :func:`jax_cache_dir`).

    Every compilation is cached (no minimum compile time), so the NUTS kernel and the
    post-processing of draws are both reused by the next process with the same model.
    """
    import jax

    folder = Path(path) if path is not None else jax_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
