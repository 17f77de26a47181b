"""Dataset preparation: one module per dataset, each with ``DESCRIPTION``, ``add_arguments(parser)`` and
``prepare(args)``. ``scripts/prepare_data.py`` lists them explicitly (no registry)."""
