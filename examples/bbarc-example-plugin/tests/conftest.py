import os

# These tests are about the plugin loading through its entry point as it does for a user, so bbarc's switch
# for running isolated from installed plugins must not hide it (set before any registry is built).
os.environ.pop("BBARC_LOAD_PLUGINS", None)
