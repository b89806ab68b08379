"""densing_bayes: how fast is the capability density of language models growing, and how sure
can we be? One hierarchical PyMC model from reference-family scaling laws to the doubling time
of the Densing Law (Xiao et al. 2024), with its uncertainty.

Layers (arrows point one way): data -> model -> inference -> analysis -> presentation.
"""

__version__ = "0.1.0"
