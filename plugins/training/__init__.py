"""Training scripts for the built-in models: torch training loops and the export to integer weights files.

Nothing that codes imports this package (the plugins read only the exported weights files); it needs torch, which
``pip install 'bbarc[train]'`` installs. The scripts read MNIST from ``--data DIR`` or ``$BBARC_DATA``
(``bbarc.plugins.training.data``).
"""
