"""lstm_exp's Hydra launcher (``hydra/launcher=pool``); Hydra instantiates launchers only from this package."""
