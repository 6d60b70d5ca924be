"""A sample third-party bbarc plugin (see README.md): ``bbarc_example.plugin`` registers the family."""
