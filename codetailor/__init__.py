"""codetailor: tailor a code-completion model to each organisation that uses it.

The small shared core: configuration, tenants and keys, the artifact home, the
prompt format and the command line. Heavier stages live in their own packages
(engine, retrieval, training, evaluation, serving).
"""

__version__ = "0.1.0"
