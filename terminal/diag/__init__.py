"""Field-engineer diagnostics behind ``atm diag ...``: library functions, no CLI wiring."""
