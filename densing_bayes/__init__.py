"""densing_bayes: how fast is the capability density of language models growing, and how sure
can we be? One hierarchical PyMC model from reference-family scaling laws to the doubling time
of the Densing Law (Xiao et al. 2024), with its uncertainty.

Layers (arrows point one way): data -> model -> inference -> analysis -> presentation; the
Python API (:mod:`densing_bayes.api`) sits on top::

    import densing_bayes as db
    fit = db.fit("default", draws=300, tune=300, chains=2)
    fit.summary(); fit.plot_density_trend(); fit.save("runs/first")
    db.load("reports/default").predict(params=7e9, tokens=2e12)
"""

__version__ = "0.1.0"

#: Public names, imported on first use so that ``import densing_bayes`` (and the CLI's
#: ``--help``) does not pay for importing PyMC.
__all__ = ["DensingFit", "fit", "load", "load_data", "load_spec", "__version__"]


def __getattr__(name: str):
    if name in __all__:
        from densing_bayes import api

        return getattr(api, name)
    raise AttributeError(f"module 'densing_bayes' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
